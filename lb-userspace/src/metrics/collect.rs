//! A scrape: what the data planes hold (read from them now, with the same readers as `show`),
//! what the agent recorded, turned into Prometheus families. [`gather`] does the reading (system
//! calls: run it off the async runtime); [`Scrape`] is plain data, and its [`Collector`] writes
//! the families, so the mapping is tested without a data plane.

use std::path::Path;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use super::labels::{self, Labels};
use super::record::{DURATION_BUCKETS, Recorded, Recorder};
use crate::live::{LiveService, Traffic};
use crate::show::{IpvsPart, View, XdpPart, read_ipvs, read_xdp};
use crate::table::BackendKind;

/// Everything one scrape reports.
#[derive(Debug, Default)]
pub struct Scrape {
    /// `None` when nothing is pinned for the configuration; `Err` when reading it failed.
    pub xdp: Option<Result<XdpPart, String>>,
    /// `None` when the kernel has no IPVS loaded.
    pub ipvs: Option<Result<IpvsPart, String>>,
    pub recorded: Recorded,
}

/// Reads the data planes of configuration `config_name` and copies what `recorder` holds.
/// Blocking.
pub fn gather(config_name: &str, recorder: &Recorder) -> Scrape {
    let pins = crate::backend::xdp::pin_dir(config_name)
        .ok()
        .filter(|d| d.exists());
    Scrape {
        xdp: pins.map(|dir: std::path::PathBuf| read_xdp(Path::new(&dir), View::Stats)),
        ipvs: read_ipvs().transpose(),
        recorded: recorder.snapshot(),
    }
}

/// The scrape as Prometheus text (format 0.0.4), and its content type.
pub fn render(scrape: Scrape) -> (String, &'static str) {
    use prometheus_client::encoding::prometheus_text;
    let mut registry = Registry::with_prefix("xdirectord");
    registry.register_collector(Box::new(scrape));
    let mut text = String::new();
    // Writing to a String cannot fail, and every name and label here is well formed.
    prometheus_text::encode(&mut text, &registry).expect("metrics encode");
    (text, prometheus_text::CONTENT_TYPE)
}

/// Writes one family: its descriptor, then each series. Nothing when there is no series.
fn family<M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (Labels, M)>,
) -> Result<(), std::fmt::Error> {
    let mut series = series.into_iter().peekable();
    let Some((_, first)) = series.peek() else {
        return Ok(());
    };
    let mut family = encoder.encode_descriptor(name, help, None, first.metric_type())?;
    for (labels, metric) in series {
        metric.encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

fn counter(v: u64) -> ConstCounter<u64> {
    ConstCounter::new(v)
}

/// A gauge of a count or a state.
fn gauge(v: impl TryInto<i64>) -> ConstGauge<i64> {
    ConstGauge::new(v.try_into().unwrap_or(i64::MAX))
}

/// A gauge of a time, in seconds.
fn seconds(v: f64) -> ConstGauge<f64> {
    ConstGauge::new(v)
}

fn backend_name(kind: BackendKind) -> &'static str {
    kind.as_str()
}

/// Every live virtual of both data planes.
fn live_services(scrape: &Scrape) -> Vec<&LiveService> {
    let ipvs = scrape.ipvs.iter().flatten().flat_map(|p| &p.services);
    let xdp = scrape.xdp.iter().flatten().flat_map(|p| &p.services);
    ipvs.chain(xdp).collect()
}

/// The traffic families of one level (`virtual` or `real`).
fn traffic(
    encoder: &mut DescriptorEncoder,
    level: &str,
    series: &[(Labels, Traffic)],
) -> Result<(), std::fmt::Error> {
    type Field = fn(&Traffic) -> u64;
    let what: [(&str, &str, Field); 5] = [
        ("connections", "Connections (new flows) scheduled", |t| {
            t.conns
        }),
        ("incoming_packets", "Packets from clients", |t| t.in_packets),
        ("incoming_bytes", "Bytes from clients", |t| t.in_bytes),
        (
            "outgoing_packets",
            "Packets to clients (0 unless masquerading)",
            |t| t.out_packets,
        ),
        (
            "outgoing_bytes",
            "Bytes to clients (0 unless masquerading)",
            |t| t.out_bytes,
        ),
    ];
    for (name, help, get) in what {
        family(
            encoder,
            &format!("{level}_{name}"),
            &format!("{help}, per {level} server, read from the data plane"),
            series.iter().map(|(l, t)| (l.clone(), counter(get(t)))),
        )?;
    }
    Ok(())
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let e = &mut encoder;
        let rec = &self.recorded;
        family(
            e,
            "build_info",
            "The running xdirectord's version",
            [(
                vec![("version", env!("CARGO_PKG_VERSION").to_string())],
                gauge(1),
            )],
        )?;
        family(
            e,
            "config_reloads",
            "Configuration reloads, by result (a failed one leaves the running configuration)",
            [
                (
                    vec![("result", "success".to_string())],
                    counter(rec.reloads_ok),
                ),
                (
                    vec![("result", "failure".to_string())],
                    counter(rec.reloads_failed),
                ),
            ],
        )?;
        family(
            e,
            "config_last_reload_timestamp_seconds",
            "When the configuration in force was read (start or reload), Unix seconds",
            rec.last_reload.map(|t| (Labels::new(), seconds(t))),
        )?;
        family(
            e,
            "backend_apply_errors",
            "Tables a data plane failed to apply (each is retried)",
            [(Labels::new(), counter(rec.apply_errors))],
        )?;
        family(
            e,
            "data_plane_read_ok",
            "1 when this scrape read the data plane, 0 when reading it failed",
            [
                ("xdp", &self.xdp.as_ref().map(|r| r.is_ok())),
                ("ipvs", &self.ipvs.as_ref().map(|r| r.is_ok())),
            ]
            .into_iter()
            .filter_map(|(plane, ok)| {
                ok.map(|ok| (vec![("plane", plane.to_string())], gauge(u8::from(ok))))
            }),
        )?;

        // Per virtual and per real, from the data planes.
        let services = live_services(self);
        let virtual_labels = |s: &LiveService| {
            labels::with(labels::service(&s.key), "backend", backend_name(s.backend))
        };
        let real_labels = |s: &LiveService, r: &crate::live::LiveReal| {
            labels::with(
                labels::real(&s.key, r.addr, r.port),
                "backend",
                backend_name(s.backend),
            )
        };
        let v_traffic: Vec<(Labels, Traffic)> = services
            .iter()
            .map(|s| (virtual_labels(s), s.stats))
            .collect();
        traffic(e, "virtual", &v_traffic)?;
        let reals: Vec<(Labels, &crate::live::LiveReal)> = services
            .iter()
            .flat_map(|s| s.reals.iter().map(move |r| (real_labels(s, r), r)))
            .collect();
        let r_traffic: Vec<(Labels, Traffic)> =
            reals.iter().map(|(l, r)| (l.clone(), r.stats)).collect();
        traffic(e, "real", &r_traffic)?;
        for (name, help, get) in [
            (
                "connections_active",
                "Established connections",
                (|r: &crate::live::LiveReal| r.active_conns) as fn(&crate::live::LiveReal) -> u64,
            ),
            (
                "connections_inactive",
                "Connections not established (opening, closing, UDP)",
                |r| r.inactive_conns,
            ),
        ] {
            family(
                e,
                &format!("virtual_{name}"),
                &format!("{help}, per virtual server, read from the data plane"),
                services.iter().map(|s| {
                    let sum: u64 = s.reals.iter().map(get).sum();
                    (virtual_labels(s), gauge(sum))
                }),
            )?;
            family(
                e,
                &format!("real_{name}"),
                &format!("{help}, per real server, read from the data plane"),
                reals.iter().map(|(l, r)| (l.clone(), gauge(get(r)))),
            )?;
        }
        family(
            e,
            "real_weight",
            "The weight in force in the data plane (0: quiescent, or not reachable yet)",
            reals.iter().map(|(l, r)| {
                let weight = if r.resolved { r.weight } else { 0 };
                (l.clone(), gauge(weight))
            }),
        )?;

        // Per virtual and per real, from the director.
        let recorded_real =
            |k: &crate::director::RealKey, port: u16| labels::real(&k.service, k.real.ip(), port);
        family(
            e,
            "real_weight_configured",
            "The weight the configuration gives the real",
            rec.reals
                .iter()
                .map(|(k, r)| (recorded_real(k, r.port), gauge(r.weight))),
        )?;
        family(
            e,
            "real_up",
            "1 while the director holds the real up (its checks pass), else 0",
            rec.reals
                .iter()
                .map(|(k, r)| (recorded_real(k, r.port), gauge(u8::from(r.up)))),
        )?;
        family(
            e,
            "real_last_change_timestamp_seconds",
            "When the director last decided the real up or down, Unix seconds",
            rec.reals
                .iter()
                .filter_map(|(k, r)| r.changed.map(|t| (recorded_real(k, r.port), seconds(t)))),
        )?;
        family(
            e,
            "virtual_up",
            "1 while one of the virtual's reals is up, else 0 (the fallback, if any, serves)",
            rec.virtuals
                .iter()
                .map(|(k, v)| (labels::service(k), gauge(u8::from(v.reals_up > 0)))),
        )?;
        family(
            e,
            "virtual_last_change_timestamp_seconds",
            "When the virtual last went up or down, Unix seconds",
            rec.virtuals
                .iter()
                .filter_map(|(k, v)| v.changed.map(|t| (labels::service(k), seconds(t)))),
        )?;

        // Health checks.
        let check_labels = |k: &crate::director::RealKey, r: &super::record::RealRecord| {
            labels::with(recorded_real(k, r.port), "check", r.check)
        };
        if !rec.reals.is_empty() {
            let mut durations = e.encode_descriptor(
                "check_duration_seconds",
                "How long a real's health check took",
                None,
                MetricType::Histogram,
            )?;
            for (k, r) in &rec.reals {
                let labels = check_labels(k, r);
                let d = &r.durations;
                let buckets: Vec<(f64, u64)> = DURATION_BUCKETS
                    .iter()
                    .copied()
                    .chain([f64::INFINITY])
                    .zip(d.buckets.iter().copied())
                    .collect();
                durations
                    .encode_family(&labels)?
                    .encode_histogram::<NoLabelSet>(d.sum, d.count, &buckets, None)?;
            }
        }
        family(
            e,
            "check_failures",
            "Failed health checks, by reason (timeout, refused, bad_answer, other)",
            rec.reals.iter().flat_map(|(k, r)| {
                lb_health::Failure::ALL
                    .iter()
                    .zip(r.failures)
                    .map(move |(f, n)| {
                        (
                            labels::with(check_labels(k, r), "reason", f.as_str()),
                            counter(n),
                        )
                    })
            }),
        )?;

        // The XDP program.
        if let Some(Ok(xdp)) = &self.xdp {
            let global = serde_json::to_value(xdp.global).unwrap_or_default();
            family(
                e,
                "xdp_packets",
                "Packets by what the XDP program did with them, summed over CPUs (see docs/dataplane.md)",
                global
                    .as_object()
                    .into_iter()
                    .flatten()
                    .filter_map(|(name, v)| {
                        v.as_u64()
                            .map(|n| (vec![("counter", name.clone())], counter(n)))
                    }),
            )?;
            let tables = [
                ("ipv4", xdp.flow_tables.ipv4),
                ("ipv6", xdp.flow_tables.ipv6),
            ];
            family(
                e,
                "xdp_flow_table_entries",
                "Live flows in the XDP flow table",
                tables
                    .iter()
                    .map(|(f, t)| (vec![("family", f.to_string())], gauge(t.entries))),
            )?;
            family(
                e,
                "xdp_flow_table_capacity",
                "The most flows the XDP flow table holds (maxflows)",
                tables
                    .iter()
                    .map(|(f, t)| (vec![("family", f.to_string())], gauge(t.capacity))),
            )?;
            family(
                e,
                "xdp_flow_table_bytes",
                "Memory of the XDP flow table",
                tables
                    .iter()
                    .map(|(f, t)| (vec![("family", f.to_string())], gauge(t.bytes))),
            )?;
            family(
                e,
                "xdp_flow_table_evicted",
                "Half-open or closing flows pushed out of a full flow-table bucket by an established flow",
                [(vec![], counter(xdp.flow_tables.evicted))],
            )?;
            family(
                e,
                "xdp_flow_table_no_room",
                "New flows that found their flow-table bucket full of live flows and were forwarded without an entry, by the consistent-hash table",
                [(vec![], counter(xdp.flow_tables.no_room))],
            )?;
            family(
                e,
                "xdp_attached",
                "1 per interface the XDP program is attached to, with its mode",
                xdp.attached.iter().map(|a| {
                    (
                        vec![
                            ("interface", a.interface.clone()),
                            ("mode", a.mode.to_string()),
                        ],
                        gauge(1),
                    )
                }),
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::LiveReal;
    use crate::table::{Protocol, ServiceKey};

    fn ipvs_service() -> LiveService {
        let traffic = |n: u64| Traffic {
            conns: n,
            in_packets: 10 * n,
            out_packets: 9 * n,
            in_bytes: 1000 * n,
            out_bytes: 900 * n,
        };
        LiveService {
            key: ServiceKey::Inet {
                protocol: Protocol::Tcp,
                addr: "192.0.2.1".parse().unwrap(),
                port: 80,
            },
            backend: BackendKind::Ipvs,
            scheduler: "wlc".into(),
            sched_flags: 0,
            persistence: None,
            one_packet: false,
            pe_name: String::new(),
            reals: vec![LiveReal {
                addr: "10.0.0.11".parse().unwrap(),
                port: 8080,
                forward: "Masq",
                weight: 5,
                fallback: false,
                resolved: true,
                unsupported: false,
                upper_threshold: 0,
                lower_threshold: 0,
                active_conns: 3,
                inactive_conns: 4,
                persist_conns: 0,
                stats: traffic(2),
                rates: None,
            }],
            stats: traffic(2),
            rates: None,
        }
    }

    #[test]
    fn an_ipvs_real_reads_as_node_exporter_labels_it() {
        let scrape = Scrape {
            xdp: None,
            ipvs: Some(Ok(IpvsPart {
                version: "1.2.1".into(),
                conn_tab_size: 4096,
                services: vec![ipvs_service()],
            })),
            recorded: Recorded::default(),
        };
        let (text, content_type) = render(scrape);
        assert!(content_type.starts_with("text/plain; version=0.0.4"));
        let real = r#"{local_address="192.0.2.1",local_port="80",proto="TCP",local_mark="",remote_address="10.0.0.11",remote_port="8080",backend="ipvs"}"#;
        let virt = r#"{local_address="192.0.2.1",local_port="80",proto="TCP",local_mark="",backend="ipvs"}"#;
        for line in [
            format!("xdirectord_real_incoming_packets_total{real} 20"),
            format!("xdirectord_real_outgoing_bytes_total{real} 1800"),
            format!("xdirectord_real_connections_total{real} 2"),
            format!("xdirectord_real_connections_active{real} 3"),
            format!("xdirectord_real_connections_inactive{real} 4"),
            format!("xdirectord_real_weight{real} 5"),
            format!("xdirectord_virtual_incoming_bytes_total{virt} 2000"),
            format!("xdirectord_virtual_connections_active{virt} 3"),
            r#"xdirectord_data_plane_read_ok{plane="ipvs"} 1"#.to_string(),
            format!(
                "xdirectord_build_info{{version=\"{}\"}} 1",
                env!("CARGO_PKG_VERSION")
            ),
            r#"xdirectord_config_reloads_total{result="failure"} 0"#.to_string(),
            "xdirectord_backend_apply_errors_total 0".to_string(),
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
        }
        assert!(text.contains("# TYPE xdirectord_real_incoming_packets_total counter\n"));
        assert!(
            !text.contains("xdirectord_xdp_"),
            "no XDP data plane, no XDP series"
        );
    }

    #[test]
    fn checks_are_histograms_and_failures_by_reason() {
        let recorder = Recorder::default();
        let config = lb_config::parse(
            b"virtual=192.0.2.1:80\n\treal=10.0.0.11 gate 4\n\tservice=http\n\tchecktype=negotiate\n",
            "t.cf".as_ref(),
            &lb_config::testing::StaticEnvironment::default(),
        )
        .unwrap();
        recorder.configure(&config, |_| false);
        let key = recorder.snapshot().reals[0].0;
        recorder.check(
            &key,
            std::time::Duration::from_millis(20),
            Some(lb_health::Failure::Timeout),
            false,
            true,
        );
        let (text, _) = render(Scrape {
            recorded: recorder.snapshot(),
            ..Scrape::default()
        });
        let real = r#"local_address="192.0.2.1",local_port="80",proto="TCP",local_mark="",remote_address="10.0.0.11",remote_port="80""#;
        for line in [
            format!("xdirectord_real_up{{{real}}} 0"),
            format!("xdirectord_real_weight_configured{{{real}}} 4"),
            format!(r#"xdirectord_check_duration_seconds_bucket{{{real},check="http",le="0.01"}} 0"#),
            format!(r#"xdirectord_check_duration_seconds_bucket{{{real},check="http",le="0.025"}} 1"#),
            format!(r#"xdirectord_check_duration_seconds_bucket{{{real},check="http",le="+Inf"}} 1"#),
            format!(r#"xdirectord_check_duration_seconds_count{{{real},check="http"}} 1"#),
            format!(r#"xdirectord_check_failures_total{{{real},check="http",reason="timeout"}} 1"#),
            format!(r#"xdirectord_check_failures_total{{{real},check="http",reason="refused"}} 0"#),
            r#"xdirectord_virtual_up{local_address="192.0.2.1",local_port="80",proto="TCP",local_mark=""} 0"#.to_string(),
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
        }
        assert!(
            text.lines().any(|l| l.starts_with(&format!(
                "xdirectord_real_last_change_timestamp_seconds{{{real}}} 1"
            ))),
            "{text}"
        );
    }
}
