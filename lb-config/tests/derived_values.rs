//! Every value ldirectord derives (defaults, fallbacks between settings, side effects), read
//! from the model with a table-driven environment.

use std::net::{IpAddr, SocketAddr};

use lb_config::testing::StaticEnvironment;
use lb_config::{
    BackendKind, CheckType, Config, ConfigError, EmailAlertStatus, Family, Forwarding, HttpMethod,
    LogTarget, Netmask, Origin, Protocol, Service, VirtualAddress, VirtualService, XdpMode, parse,
};

fn config(text: &str) -> Config {
    match parse(
        text.as_bytes(),
        "test.cf".as_ref(),
        &StaticEnvironment::default(),
    ) {
        Ok(c) => c,
        Err(e) => panic!("{}", e.render(1)),
    }
}

fn error(text: &str) -> (Option<usize>, String) {
    match parse(
        text.as_bytes(),
        "test.cf".as_ref(),
        &StaticEnvironment::default(),
    ) {
        Ok(_) => panic!("accepted: {text}"),
        Err(ConfigError::Invalid { error, .. }) => (error.line, error.message),
        Err(e) => panic!("{e}"),
    }
}

fn one(text: &str) -> VirtualService {
    let mut c = config(text);
    assert_eq!(c.virtuals.len(), 1);
    c.virtuals.remove(0)
}

fn ours(c: &Config) -> Vec<&str> {
    c.warnings
        .iter()
        .filter(|w| w.origin == Origin::Xdirectord)
        .map(|w| w.message.as_str())
        .collect()
}

const V: &str = "virtual=192.0.2.1:80\n\treal=192.0.2.11:80 gate\n";

#[test]
fn global_defaults() {
    let g = config("").global;
    assert_eq!(g.checktimeout, None);
    assert_eq!(g.negotiatetimeout, None);
    assert_eq!(g.checkinterval, 10);
    assert_eq!(g.checkcount, 1);
    assert_eq!(g.failurecount, 1);
    assert!(!g.autoreload && !g.fork && !g.supervised && !g.readdquiescent);
    assert!(
        !g.quiescent,
        "the code's default is no, whatever the man page says"
    );
    assert!(g.cleanstop);
    assert_eq!(g.logfile, LogTarget::File("/var/log/ldirectord.log".into()));
    assert_eq!(g.emailalertstatus, EmailAlertStatus::ALL);
    assert_eq!(g.emailalertfreq, 0);
    assert_eq!(g.emailalert, None);
    assert_eq!((g.backend, g.xdpmode, g.metrics), (None, None, None));
    assert!(g.interfaces.is_empty() && g.execute.is_empty());
}

#[test]
fn per_virtual_defaults() {
    let v = one(V);
    assert_eq!(v.scheduler, "wrr");
    assert_eq!(v.check.checktype, CheckType::Negotiate);
    assert_eq!(v.check.checkcommand, "/bin/true");
    assert_eq!(v.check.request, "/");
    assert_eq!(v.check.receive, "");
    assert_eq!(v.check.httpmethod, HttpMethod::Get);
    assert_eq!((v.check.login.as_str(), v.check.passwd.as_str()), ("", ""));
    assert_eq!(
        (v.check.database.as_str(), v.check.secret.as_str()),
        ("", "")
    );
    assert_eq!(v.check.virtualhost, None);
    assert_eq!(
        (v.persistent, v.netmask, v.schedflags.as_deref()),
        (None, None, None)
    );
    assert!(!v.ops);
    assert_eq!(v.reals[0].weight, 1);
    assert_eq!(v.reals[0].forwarding, Forwarding::Gate);
    assert_eq!(v.fallback, None);
}

#[test]
fn timeouts_fall_back_on_each_other() {
    let t = |global: &str, block: &str| {
        let v = one(&format!("{global}{V}{block}"));
        (v.check.checktimeout, v.check.negotiatetimeout)
    };
    assert_eq!(t("", ""), (5, 30));
    assert_eq!(t("checktimeout=7\n", ""), (7, 7));
    assert_eq!(t("negotiatetimeout=9\n", ""), (9, 9));
    assert_eq!(t("checktimeout=7\nnegotiatetimeout=9\n", ""), (7, 9));
    assert_eq!(t("", "\tchecktimeout=3\n"), (3, 3));
    assert_eq!(t("", "\tnegotiatetimeout=4\n"), (4, 4));
    // The virtual's own other timeout comes before the global ones.
    assert_eq!(
        t(
            "checktimeout=7\nnegotiatetimeout=9\n",
            "\tnegotiatetimeout=4\n"
        ),
        (4, 4)
    );
    assert_eq!(
        t("checktimeout=7\nnegotiatetimeout=9\n", "\tchecktimeout=3\n"),
        (3, 3)
    );
    assert_eq!(t("negotiatetimeout=9\n", "\tchecktimeout=3\n"), (3, 3));
    assert_eq!(t("checktimeout=7\n", "\tnegotiatetimeout=4\n"), (4, 4));
    // Written "00" in a block: ldirectord accepts it and it means 0.
    assert_eq!(t("", "\tchecktimeout=00\n"), (0, 0));
}

#[test]
fn global_settings_after_the_blocks_still_apply() {
    let v = one(&format!(
        "{V}checktimeout=8\nquiescent=yes\nfailurecount=3\n"
    ));
    assert_eq!(v.check.checktimeout, 8);
    assert!(v.quiescent);
    assert_eq!(v.check.failurecount, 3);
}

#[test]
fn counts_fall_back_on_the_global_ones() {
    let v = one(&format!("checkcount=4\nfailurecount=2\n{V}"));
    assert_eq!((v.check.checkcount, v.check.failurecount), (4, 2));
    let v = one(&format!(
        "checkcount=4\nfailurecount=2\n{V}\tcheckcount=1\n\tfailurecount=5\n"
    ));
    assert_eq!((v.check.checkcount, v.check.failurecount), (1, 5));
}

#[test]
fn checkinterval_per_virtual_only_with_fork() {
    let v = one(&format!("checkinterval=3\n{V}\tcheckinterval=7\n"));
    assert_eq!(v.check.checkinterval, 3);
    let v = one(&format!(
        "checkinterval=3\nfork=yes\n{V}\tcheckinterval=7\n"
    ));
    assert_eq!(v.check.checkinterval, 7);
    let c = config(&format!("{V}\tcheckinterval=7\n"));
    let w = c.warnings.last().unwrap();
    assert_eq!(w.line, None);
    assert_eq!(
        w.message,
        "checkinterval in virtual service tcp:192.0.2.1:80 ignored when fork=no"
    );
}

#[test]
fn check_port_per_real() {
    let v = one(
        "virtual=192.0.2.1:80\n\treal=192.0.2.11:8080 gate\n\treal=192.0.2.12 gate\n\tservice=https\n",
    );
    assert_eq!(v.reals[0].check.port, Some(8080), "the real's port");
    assert_eq!(
        v.reals[1].check.port,
        Some(443),
        "the service's port when the real has none"
    );
    let v = one("virtual=192.0.2.1:80\n\treal=192.0.2.11:8080 gate\n\tcheckport=81\n");
    assert_eq!(v.reals[0].check.port, Some(81), "checkport first");
    let v = one("virtual=192.0.2.1:80\n\treal=192.0.2.12 gate\n\tservice=none\n");
    assert_eq!(v.reals[0].check.port, None);
}

#[test]
fn service_from_the_port() {
    let service = |port: &str| {
        one(&format!(
            "virtual=192.0.2.1:{port}\n\treal=192.0.2.11 gate\n"
        ))
        .check
        .service
    };
    assert_eq!(service("80"), Service::Http);
    assert_eq!(service("http"), Service::Http, "from the resolved port");
    assert_eq!(service("21"), Service::Ftp);
    assert_eq!(service("3128"), Service::HttpProxy);
    assert_eq!(service("5432"), Service::Pgsql);
    assert_eq!(service("8080"), Service::None);
    assert_eq!(
        service("080"),
        Service::None,
        "ldirectord compares the text"
    );
    let v = one("virtual=9\n\treal=192.0.2.11 gate\n");
    assert_eq!(
        v.check.service,
        Service::None,
        "firewall marks have no port to go by"
    );
    let v = one("virtual=192.0.2.1:8080\n\treal=192.0.2.11 gate\n\tservice=http\n");
    assert_eq!(v.check.service, Service::Http);
}

#[test]
fn protocol_from_the_unresolved_port() {
    let protocol = |port: &str| match one(&format!(
        "virtual=192.0.2.1:{port}\n\treal=192.0.2.11 gate\n"
    ))
    .address
    {
        VirtualAddress::Socket { protocol, .. } => protocol,
        other => panic!("{other:?}"),
    };
    assert_eq!(protocol("53"), Protocol::Udp);
    assert_eq!(protocol("domain"), Protocol::Udp);
    assert_eq!(protocol("053"), Protocol::Tcp);
    assert_eq!(protocol("80"), Protocol::Tcp);
    let v = one("virtual=192.0.2.1:53\n\treal=192.0.2.11 gate\n\tprotocol=tcp\n");
    assert!(matches!(
        v.address,
        VirtualAddress::Socket {
            protocol: Protocol::Tcp,
            ..
        }
    ));
    assert_eq!(v.id, "tcp:192.0.2.1:53");
}

#[test]
fn ids_and_addresses() {
    let c = config(
        "virtual=192.0.2.1:http\n\treal=web1 gate\nvirtual6=[2001:DB8::1]:443\n\treal6=[2001:db8::2] gate\n\
         virtual=7\n\treal=web2 gate\nvirtual6=8\n\treal6=web6 gate\nvirtual=localhost:80\n\treal=web1 gate\n",
    );
    let ids: Vec<&str> = c.virtuals.iter().map(|v| v.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "tcp:192.0.2.1:80",
            "tcp:[2001:db8::1]:443",
            "fwm:7",
            "fwm6:8",
            "tcp:127.0.0.1:80"
        ]
    );
    assert_eq!(
        c.virtuals[1].address,
        VirtualAddress::Socket {
            protocol: Protocol::Tcp,
            address: "[2001:db8::1]:443".parse().unwrap()
        }
    );
    assert_eq!(
        c.virtuals[3].address,
        VirtualAddress::Fwmark {
            mark: 8,
            family: Family::Inet6
        }
    );
    assert_eq!(
        c.virtuals[0].reals[0].address,
        "192.0.2.11".parse::<IpAddr>().unwrap()
    );
    assert_eq!(
        c.virtuals[3].reals[0].address,
        "2001:db8::11".parse::<IpAddr>().unwrap()
    );
    assert_eq!(c.name, "test.cf");
}

#[test]
fn ftp_and_sip_fill_in_logins_depending_on_order() {
    let v = one("virtual=192.0.2.1:21\n\treal=web1 gate\n\tservice=ftp\n");
    assert_eq!(v.check.login, "anonymous");
    assert_eq!(v.check.passwd, "ldirectord@director");
    let v = one("virtual=192.0.2.1:21\n\treal=web1 gate\n\tlogin=\"me\"\n\tservice=ftp\n");
    assert_eq!(v.check.login, "me", "a login before service= stays");
    assert_eq!(v.check.passwd, "ldirectord@director");
    let v = one(
        "virtual=192.0.2.1:21\n\treal=web1 gate\n\tservice=ftp\n\tlogin=\"me\"\n\tpasswd=\"pw\"\n",
    );
    assert_eq!(
        (v.check.login.as_str(), v.check.passwd.as_str()),
        ("me", "pw"),
        "after service= they override"
    );
    let v = one("virtual=192.0.2.1:5060\n\treal=web1 gate\n\tservice=sip\n");
    assert_eq!(v.check.login, "ldirectord@director");
    assert_eq!(v.check.passwd, "", "sip sets no password");
    let v = one("virtual=192.0.2.1:21\n\treal=web1 gate\n\tservice=ftp\n\tservice=http\n");
    assert_eq!(
        v.check.login, "anonymous",
        "a later service keeps what ftp set"
    );
    // Only service= has the side effect: the port-derived ftp service does not.
    let v = one("virtual=192.0.2.1:21\n\treal=web1 gate\n");
    assert_eq!(
        (v.check.service, v.check.login.as_str()),
        (Service::Ftp, "")
    );
}

#[test]
fn fallback_own_then_global() {
    let v = one(
        "fallback=127.0.0.1:8080\nvirtual=192.0.2.1:80\n\treal=web1 gate\n\tfallback=192.0.2.99 masq\n",
    );
    let fb = v.fallback.unwrap();
    assert_eq!(
        (fb.address, fb.port, fb.forwarding),
        ("192.0.2.99".parse().unwrap(), 80, Forwarding::Masq)
    );
    assert_eq!(fb.line, 4, "the block's own line");

    let v = one(&format!("fallback=127.0.0.1:8080\n{V}"));
    let fb = v.fallback.unwrap();
    assert_eq!(
        (fb.port, fb.forwarding, fb.line),
        (8080, Forwarding::Gate, 1)
    );

    let v = one(&format!("fallback=127.0.0.1 ipip\n{V}"));
    assert_eq!(v.fallback.unwrap().port, 80, "no port: the virtual's");

    let c = config("fallback=127.0.0.1:domain\nvirtual=192.0.2.1:53\n\treal=web1 gate\n");
    assert_eq!(c.global.fallback.as_ref().unwrap().udp_port, Some(53));
    assert_eq!(c.virtuals[0].fallback.as_ref().unwrap().port, 53);

    let v = one("fallback6=[::1]:81\nvirtual6=[2001:db8::1]:80\n\treal6=web6 gate\n");
    assert_eq!(
        v.fallback.unwrap().address,
        "::1".parse::<IpAddr>().unwrap()
    );
    let v = one(&format!("fallback6=[::1]:81\n{V}"));
    assert_eq!(v.fallback, None, "fallback6 is for IPv6 virtuals");
}

#[test]
fn fallback_for_firewall_marks() {
    let v = one("virtual=3\n\treal=web1 gate\n\tfallback=127.0.0.1\n");
    assert_eq!(v.fallback.unwrap().port, 0, "a mark's port is 0");
    let c = config("fallback=127.0.0.1:80\nvirtual=3\n\treal=web1 gate\n");
    assert_eq!(c.virtuals[0].fallback, None);
    assert_eq!(
        ours(&c),
        ["global fallback not applied to virtual service fwm:3 (a firewall mark)"]
    );
}

#[test]
fn per_virtual_settings_fall_back_on_global() {
    let global = "quiescent=yes\ncleanstop=no\nfallbackcommand=/bin/fb\nemailalert=a@x\nemailalertfreq=60\n\
                  emailalertstatus=running\nsmtp=mail\nbackend=ipvs\ninterface=eth0\nxdpmode=generic\n";
    let v = one(&format!("{global}{V}"));
    assert!(v.quiescent && !v.cleanstop);
    assert_eq!(v.fallbackcommand.as_deref(), Some("/bin/fb"));
    assert_eq!(v.emailalert.as_deref(), Some("a@x"));
    assert_eq!(v.emailalertfreq, 60);
    assert_eq!(
        v.emailalertstatus,
        EmailAlertStatus {
            running: true,
            ..EmailAlertStatus::NONE
        }
    );
    assert_eq!(v.smtp.as_deref(), Some("mail"));
    assert_eq!(
        (v.backend, v.xdpmode),
        (Some(BackendKind::Ipvs), Some(XdpMode::Generic))
    );
    assert_eq!(v.interfaces, ["eth0"]);

    let block = "\tquiescent=no\n\tcleanstop=yes\n\tfallbackcommand=\"/bin/own\"\n\temailalert=\"b@x\"\n\
                 \temailalertfreq=5\n\temailalertstatus=none\n\tsmtp=relay\n\tbackend=xdp\n\tinterface=eth1,eth2\n\txdpmode=native\n";
    let v = one(&format!("{global}{V}{block}"));
    assert!(!v.quiescent && v.cleanstop);
    assert_eq!(v.fallbackcommand.as_deref(), Some("/bin/own"));
    assert_eq!(v.emailalert.as_deref(), Some("b@x"));
    assert_eq!(v.emailalertfreq, 5);
    assert_eq!(v.emailalertstatus, EmailAlertStatus::NONE);
    assert_eq!(v.smtp.as_deref(), Some("relay"));
    assert_eq!(
        (v.backend, v.xdpmode),
        (Some(BackendKind::Xdp), Some(XdpMode::Native))
    );
    assert_eq!(v.interfaces, ["eth1", "eth2"]);
}

#[test]
fn metrics_is_global() {
    let c = config(&format!("metrics=[::1]:9100\n{V}"));
    assert_eq!(
        c.global.metrics,
        Some("[::1]:9100".parse::<SocketAddr>().unwrap())
    );
    let (line, message) = error(&format!("{V}\tmetrics=127.0.0.1:9100\n"));
    assert_eq!(line, Some(3));
    assert!(message.starts_with("Unknown command"));
}

#[test]
fn xdpmode_conflicts_on_a_shared_interface() {
    let text = format!(
        "interface=eth0\nxdpmode=native\n{V}virtual=192.0.2.2:80\n\treal=web1 gate\n\txdpmode=generic\n"
    );
    let (line, message) = error(&text);
    assert_eq!(line, Some(5));
    assert_eq!(
        message,
        "xdpmode generic of virtual service tcp:192.0.2.2:80 conflicts with xdpmode native of virtual service tcp:192.0.2.1:80 on interface eth0"
    );
    // Different interfaces may differ.
    config(&format!(
        "{V}\tinterface=eth0\n\txdpmode=native\nvirtual=192.0.2.2:80\n\treal=web1 gate\n\tinterface=eth1\n\txdpmode=generic\n"
    ));
}

#[test]
fn reals_in_file_order_with_ranges_expanded() {
    let v = one(
        "virtual=192.0.2.1:80\n\treal=192.0.2.11:80 gate 5\n\treal=192.0.2.20->192.0.2.22:http masq 2 \"a\", \"b\"\n\
         \treal=192.0.2.30:81 ipip l:3 u:9\n",
    );
    let summary: Vec<(String, u16, Forwarding, u32)> = v
        .reals
        .iter()
        .map(|r| (r.address.to_string(), r.port, r.forwarding, r.weight))
        .collect();
    assert_eq!(
        summary,
        [
            ("192.0.2.11".into(), 80, Forwarding::Gate, 5),
            ("192.0.2.20".into(), 80, Forwarding::Masq, 2),
            ("192.0.2.21".into(), 80, Forwarding::Masq, 2),
            ("192.0.2.22".into(), 80, Forwarding::Masq, 2),
            ("192.0.2.30".into(), 81, Forwarding::Ipip, 1),
        ]
    );
    assert_eq!(v.reals[1].request.as_deref(), Some("/a"));
    assert_eq!(v.reals[1].receive.as_deref(), Some("b"));
    assert_eq!(
        (v.reals[4].lower_threshold, v.reals[4].upper_threshold),
        (Some(3), Some(9))
    );
    assert_eq!(v.reals[1].line, 3);
}

#[test]
fn check_request_receive_and_url_per_real() {
    let v = one(
        "virtual=192.0.2.1:80\n\treal=192.0.2.11:80 gate\n\treal=192.0.2.12:8080 gate \"status\", \"up\"\n\
         \treal=192.0.2.13:80 gate \"http://example.org/x\", \"y\"\n\treal=192.0.2.14:80 gate \"/lost\", \"gone\"\n\
         \trequest=\"index.html\"\n\treceive=\"Test\"\n",
    );
    let checks: Vec<(&str, &str, &str)> = v
        .reals
        .iter()
        .map(|r| {
            (
                r.check.request.as_str(),
                r.check.receive.as_str(),
                r.check.url.as_str(),
            )
        })
        .collect();
    assert_eq!(
        checks,
        [
            ("/index.html", "Test", "http://192.0.2.11:80/index.html"),
            ("/status", "up", "http://192.0.2.12:8080/status"),
            ("/http://example.org/x", "y", "http://example.org/x"),
            // ldirectord loses the receive string of a request starting with '/': the request
            // stays, but the URL and the receive string are the virtual's.
            ("/lost", "Test", "http://192.0.2.14:80/index.html"),
        ]
    );
    let v =
        one("virtual=192.0.2.1:3128\n\treal=192.0.2.11 gate\n\trequest=\"http://example.org/\"\n");
    assert_eq!(v.check.service, Service::HttpProxy);
    assert_eq!(
        v.reals[0].check.url, "http://example.org/",
        "http_proxy fetches the request itself"
    );
    let v = one("virtual6=[2001:db8::1]:443\n\treal6=[2001:db8::2] gate\n");
    assert_eq!(v.reals[0].check.url, "https://[2001:db8::2]:443/");
}

#[test]
fn block_values() {
    let v = one(&format!(
        "{V}\tchecktype=7\n\tscheduler=sh\n\tpersistent=300\n\tnetmask=255.255.255.0\n\tschedflags=sh-port\n\
         \tprotocol=udp\n\tops=yes\n\thttpmethod=head\n\tvirtualhost=\"www.example.org\"\n\tload=\"cpu\"\n\
         \tmonitorfile=/tmp/m.log\n\tservicename=Web\n\tcomment=Main site\n\tcheckcommand=\"/bin/check x\"\n"
    ));
    assert_eq!(v.check.checktype, CheckType::Combined(7));
    assert_eq!(v.scheduler, "sh");
    assert_eq!(v.persistent, Some(300));
    assert_eq!(
        v.netmask,
        Some(Netmask::V4("255.255.255.0".parse().unwrap()))
    );
    assert_eq!(v.schedflags.as_deref(), Some("sh-port"));
    assert!(matches!(
        v.address,
        VirtualAddress::Socket {
            protocol: Protocol::Udp,
            ..
        }
    ));
    assert!(v.ops);
    assert!(
        !one(&format!("{V}\tops=yes\n")).ops,
        "ldirectord applies ops to UDP only"
    );
    assert_eq!(v.check.httpmethod, HttpMethod::Head);
    assert_eq!(v.check.virtualhost.as_deref(), Some("www.example.org"));
    assert_eq!(v.check.load.as_deref(), Some("cpu"));
    assert_eq!(v.monitorfile.as_deref(), Some("/tmp/m.log".as_ref()));
    assert_eq!(
        (v.servicename.as_deref(), v.comment.as_deref()),
        (Some("Web"), Some("Main site"))
    );
    assert_eq!(v.check.checkcommand, "/bin/check x");
    let v = one("virtual6=[2001:db8::1]:80\n\treal6=web6 gate\n\tnetmask=48\n");
    assert_eq!(v.netmask, Some(Netmask::V6(48)));
}

#[test]
fn global_values() {
    let g = config(
        "checkinterval=4\nautoreload=yes\ncallback=\"/bin/cb\"\nlogfile=\"local0\"\nexecute=a.cf\nexecute=a.cf\n\
         execute=b.cf\nfork=yes\nsupervised\nreaddquiescent=yes\nemailalertfrom=x@y\nmaintenancedir=/tmp\n",
    )
    .global;
    assert_eq!(g.checkinterval, 4);
    assert!(g.autoreload && g.fork && g.supervised && g.readdquiescent);
    assert_eq!(g.callback.as_deref(), Some("/bin/cb"));
    assert_eq!(g.logfile, LogTarget::Syslog("local0".into()));
    assert_eq!(g.execute, ["a.cf", "b.cf"]);
    assert_eq!(g.emailalertfrom.as_deref(), Some("x@y"));
    assert_eq!(g.maintenancedir.as_deref(), Some("/tmp".as_ref()));
    let g = config("logfile=\"/tmp/ld.log \"\n").global;
    assert_eq!(
        g.logfile,
        LogTarget::File("/tmp/ld.log".into()),
        "Perl's open ignores the blank"
    );
}

#[test]
fn quirks_are_read_as_ldirectord_reads_them_and_reported() {
    let c = config("virtual=192.168.1.1\n\treal=web1 gate\n");
    assert_eq!(
        c.virtuals[0].address,
        VirtualAddress::Fwmark {
            mark: 192,
            family: Family::Inet
        }
    );
    assert_eq!(
        ours(&c),
        ["virtual \"192.168.1.1\" read as firewall mark 192"]
    );

    let c = config("virtual=192.0.2.1:80\n\treal=192.0.2.2::5060 gate\n");
    assert_eq!(
        c.virtuals[0].reals[0].address,
        "0.0.19.196".parse::<IpAddr>().unwrap()
    );
    assert_eq!(c.virtuals[0].reals[0].port, 0);
    assert_eq!(ours(&c).len(), 2);

    let c = config("virtual=192.0.2.1:80\n\treal=0.0.0.8->0.0.0.9:80 gate\n");
    assert_eq!(
        c.virtuals[0].reals.len(),
        82,
        "8, 9, then 10 to 89: \"10\" le \"9\""
    );

    let c = config("virtual=192.0.2.1:80\n\treal=192.0.2.2:80 gate \"a\" \"b 2\" \"c\" \"d\"\n");
    let r = &c.virtuals[0].reals[0];
    assert_eq!(
        (r.weight, r.request.as_deref(), r.receive.as_deref()),
        (2, Some("/c"), Some("d"))
    );

    let c = config(&format!("{V}\tscheduler=Wrr\n"));
    assert_eq!(c.virtuals[0].scheduler, "rr");

    let c = config(&format!("checkinterval=1m\n{V}"));
    assert_eq!(c.global.checkinterval, 1);
    assert_eq!(ours(&c), ["checkinterval = 1m read as 1"]);

    let c = config(&format!("{V}\tcheckcommand=\"/bin/check --tag=#1\"\n"));
    assert_eq!(c.virtuals[0].check.checkcommand, "\"/bin/check --tag=");

    let c = config(&format!("{V}\tnetmask=255.255.255.256\n"));
    assert_eq!(c.virtuals[0].netmask, None);

    let c =
        config("virtual=192.0.2.1:080\n\treal=web1 gate\nvirtual=192.0.2.1:80\n\treal=web1 gate\n");
    assert_eq!(c.virtuals[0].id, "tcp:192.0.2.1:080");
    assert_eq!(
        c.virtuals[0].address, c.virtuals[1].address,
        "one address, two ids, as ldirectord has it"
    );
}

#[test]
fn errors_stop_at_the_first_with_earlier_warnings_kept() {
    let text = "checkcount=2\nquiescent=maybe\nfork=maybe\n";
    match parse(
        text.as_bytes(),
        "t.cf".as_ref(),
        &StaticEnvironment::default(),
    ) {
        Err(ConfigError::Invalid {
            warnings, error, ..
        }) => {
            assert_eq!(warnings.len(), 1);
            assert_eq!(error.line, Some(2));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        error("virtual=192.0.2.1:80"),
        (Some(1), "duplicate virtual server".into())
    );
    assert_eq!(
        error("virtual=192.0.2.1:80\n\treal=192.0.2.2->192.0.2.1:80 gate\n"),
        (Some(2), "Invalid Range: 192.0.2.2-192.0.2.1: First value must be greater than or equal to the second value".into())
    );
}

#[test]
fn huge_ranges_are_refused() {
    let (line, message) = error("virtual=192.0.2.1:80\n\treal=10.0.0.0->10.255.255.255:80 gate\n");
    assert_eq!(line, Some(2));
    assert_eq!(
        message,
        "range 10.0.0.0->10.255.255.255 gives more than 65536 real servers"
    );
}

#[test]
fn the_model_serialises_and_compares() {
    let c = config(&format!(
        "fallback=127.0.0.1\nmetrics=127.0.0.1:9100\n{V}\tchecktype=3\n\tnetmask=255.0.0.0\nvirtual6=4\n\treal6=web6 gate\n"
    ));
    let json = serde_json::to_string(&c).unwrap();
    let back: Config = serde_json::from_str(&json).unwrap();
    assert_eq!(back, c);
    let other = config(&format!(
        "fallback=127.0.0.1\nmetrics=127.0.0.1:9100\n{V}\tchecktype=4\n"
    ));
    assert_ne!(other, c);
}
