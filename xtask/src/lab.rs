//! `cargo xtask lab up|down|status`: an LVS direct-routing site built from network namespaces on
//! this one machine, for the demo, the end-to-end tests and trying xdirectord by hand.
//!
//! ```text
//!  xdlab-client     xdlab-dir      xdlab-r1       xdlab-r2       xdlab-r3      one veth `eth0` each
//!  .10              .2 + VIP       .11            .12            .13           10.200.0.0/24
//!  ::10             ::2 + VIP6     ::11           ::12           ::13          fd00:200::/64
//!    |                |              |              |              |
//!  client            dir            r1             r2             r3           peers, xdp-pass on each
//!    +----------------+---------- br0 in xdlab-sw -+--------------+
//! ```
//!
//! The reals hold VIP and VIP6 on `lo` and ignore ARP for them (`arp_ignore`/`arp_announce`), as
//! ldirectord's guides set them up; the director holds the VIPs on `eth0`, so with no balancer
//! running its own stack answers them (the `fallback = 127.0.0.1:80` case). See docs/lab.md.
//!
//! Everything `up` creates is one of: the namespaces in [`NAMESPACES`] (their veths and bridge go
//! with them), processes inside them (the web servers), and [`RUN_DIR`]. `down` removes all of it
//! whatever state it is in, which is what lets it clean up after a crash.

pub mod agent;
pub mod client;
pub mod httpd;
pub mod udp;

use anyhow::{Context as _, Result, bail};
use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::capture;

/// Every namespace of the lab starts with this, and nothing else on the machine should.
pub const NS_PREFIX: &str = "xdlab-";
/// The switch: holds [`BRIDGE`] and the switch-side end of every host's veth.
pub const SWITCH_NS: &str = "xdlab-sw";
pub const BRIDGE: &str = "br0";
/// The one interface of every host namespace.
pub const HOST_IF: &str = "eth0";
/// Pid files and logs of the lab's web servers.
pub const RUN_DIR: &str = "/run/xdlab";

pub const PREFIX_LEN_V4: u8 = 24;
pub const PREFIX_LEN_V6: u8 = 64;
pub const VIP: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 100);
pub const VIP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x200, 0, 0, 0, 0, 0, 0x100);
pub const HTTP_PORT: u16 = 80;
/// The health-check page of ldirectord's guides (`request = "/areyouthere.php"`).
pub const CHECK_PATH: &str = "/areyouthere.php";
/// What the director's own web server answers on every page.
pub const FALLBACK_BODY: &str = "fallback on director";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Client,
    Director,
    Real,
}

/// A web server of the lab. Bodies are sent followed by one newline (for people using curl).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WebServer {
    /// Also sent as the `Server` header.
    pub name: &'static str,
    /// The body of `/`.
    pub index_body: &'static str,
    /// The body of [`CHECK_PATH`].
    pub check_body: &'static str,
}

/// One host namespace of the lab.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Host {
    pub ns: &'static str,
    /// The switch-side end of the host's `eth0`, in [`SWITCH_NS`] on [`BRIDGE`].
    pub peer: &'static str,
    pub role: Role,
    pub ipv4: Ipv4Addr,
    pub ipv6: Ipv6Addr,
    /// `eth0`'s MAC, fixed (it spells the IPv4 address) so captures and neighbour tables read the
    /// same on every run.
    pub mac: &'static str,
    pub web: Option<WebServer>,
}

pub const CLIENT: Host = Host {
    ns: "xdlab-client",
    peer: "client",
    role: Role::Client,
    ipv4: Ipv4Addr::new(10, 200, 0, 10),
    ipv6: Ipv6Addr::new(0xfd00, 0x200, 0, 0, 0, 0, 0, 0x10),
    mac: "02:00:0a:c8:00:0a",
    web: None,
};

pub const DIRECTOR: Host = Host {
    ns: "xdlab-dir",
    peer: "dir",
    role: Role::Director,
    ipv4: Ipv4Addr::new(10, 200, 0, 2),
    ipv6: Ipv6Addr::new(0xfd00, 0x200, 0, 0, 0, 0, 0, 0x2),
    mac: "02:00:0a:c8:00:02",
    web: Some(WebServer {
        name: "fallback",
        index_body: FALLBACK_BODY,
        check_body: FALLBACK_BODY,
    }),
};

pub const REALS: [Host; 3] = [
    real("xdlab-r1", "r1", 11, "02:00:0a:c8:00:0b", "web1", "OK web1"),
    real("xdlab-r2", "r2", 12, "02:00:0a:c8:00:0c", "web2", "OK web2"),
    real("xdlab-r3", "r3", 13, "02:00:0a:c8:00:0d", "web3", "OK web3"),
];

const fn real(
    ns: &'static str,
    peer: &'static str,
    last: u8,
    mac: &'static str,
    name: &'static str,
    check_body: &'static str,
) -> Host {
    Host {
        ns,
        peer,
        role: Role::Real,
        ipv4: Ipv4Addr::new(10, 200, 0, last),
        // fd00:200::11 and friends: the same digits as the IPv4 host part, read as hex.
        ipv6: Ipv6Addr::new(0xfd00, 0x200, 0, 0, 0, 0, 0, 0x10 + (last as u16 - 10)),
        mac,
        web: Some(WebServer {
            name,
            index_body: name,
            check_body,
        }),
    }
}

pub const HOSTS: [Host; 5] = [CLIENT, DIRECTOR, REALS[0], REALS[1], REALS[2]];

/// Every namespace of the lab, the switch first (it is created first).
pub const NAMESPACES: [&str; 6] = [
    SWITCH_NS,
    CLIENT.ns,
    DIRECTOR.ns,
    REALS[0].ns,
    REALS[1].ns,
    REALS[2].ns,
];

/// `http://ADDR/PATH`, with IPv6 addresses in brackets.
pub fn http_url(addr: impl Into<IpAddr>, path: &str) -> String {
    match addr.into() {
        IpAddr::V4(a) => format!("http://{a}{path}"),
        IpAddr::V6(a) => format!("http://[{a}]{path}"),
    }
}

/// `ip netns exec NS PROGRAM`, for callers that add arguments, spawn, or want the exit status.
pub fn command_in(ns: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut command = Command::new("ip");
    command.args(["netns", "exec", ns]).arg(program);
    command
}

/// Runs `argv` inside namespace `ns` and returns its standard output; the error names the command
/// and carries its standard error.
pub fn exec_in(ns: &str, argv: &[&str]) -> Result<String> {
    let (program, args) = argv.split_first().context("exec_in: empty command")?;
    capture(command_in(ns, program).args(args))
}

/// `ip -n NS ARGS…`: `ip` itself enters the namespace, no exec needed.
fn ip_in(ns: &str, args: &[&str]) -> Result<String> {
    capture(Command::new("ip").args(["-n", ns]).args(args))
}

/// Whether this process runs as root (the lab creates namespaces; tests skip without it).
pub fn is_root() -> bool {
    fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|uids| uids.split_whitespace().nth(1))
            == Some("0")
    })
}

/// The lab's namespaces that exist now (any `xdlab-*`, also ones a newer lab layout left).
pub fn existing_namespaces() -> Result<Vec<String>> {
    let list = capture(Command::new("ip").args(["netns", "list"]))?;
    // Lines read `NAME` or `NAME (id: N)`.
    Ok(list
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| name.starts_with(NS_PREFIX))
        .map(str::to_owned)
        .collect())
}

// ---------------------------------------------------------------------------------------------
// The XDP objects of lb-userspace's build script

/// The build-script output directory of lb-userspace, where its build script leaves the compiled
/// XDP programs (`lb-ebpf`, `xdp-baseline`, `xdp-pass`, `xdp-bench-driver`,
/// `xdp-memory-floor`, `xdp-ipip-decap`: every build has them, though only `test-support` embeds
/// the test programs). Builds lb-userspace (without `test-support`, as it ships) to find it, so
/// it holds current objects in whatever target directory cargo uses.
pub fn lb_userspace_out_dir() -> Result<PathBuf> {
    let mut command = crate::cargo();
    command
        .args([
            "build",
            "--package",
            "lb-userspace",
            "--message-format=json-render-diagnostics",
        ])
        .current_dir(crate::workspace_root())
        .stderr(Stdio::inherit());
    let out = command
        .output()
        .with_context(|| format!("cannot start {command:?}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let out_dir = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "build-script-executed")
        .filter(|m| {
            m["package_id"]
                .as_str()
                .and_then(package_name_of_id)
                .is_some_and(|name| name == "lb-userspace")
        })
        .find_map(|m| m["out_dir"].as_str().map(PathBuf::from));
    match (out.status.success(), out_dir) {
        (true, Some(dir)) => Ok(dir),
        (true, None) => bail!(
            "{command:?} succeeded but reported no build-script-executed message for lb-userspace"
        ),
        // The build script runs before lb-userspace itself compiles: its objects are good even when
        // the Rust code (which others may be editing) does not build.
        (false, Some(dir)) => {
            eout!(
                "lab: warning: {command:?} failed ({}), but lb-userspace's build script ran; \
                 using the XDP objects in {}",
                out.status,
                dir.display()
            );
            Ok(dir)
        }
        (false, None) => bail!("{command:?} failed: {}", out.status),
    }
}

/// The package name in a cargo package id, in either of its forms:
/// `path+file:///w/lb-userspace#0.1.0`, `registry+https://…#name@1.0.0`, or the older
/// `name 0.1.0 (path+file:///…)`.
fn package_name_of_id(id: &str) -> Option<&str> {
    if let Some((url, fragment)) = id.split_once('#') {
        return match fragment.split_once('@') {
            Some((name, _version)) => Some(name),
            // The name is left out when it is the last path segment of the URL.
            None => url.rsplit('/').next(),
        };
    }
    id.split_whitespace().next()
}

/// The `xdp-pass` object (section `xdp`): a program that passes every frame. A veth delivers the
/// frames its peer sends with XDP_TX or redirect only when it runs an XDP program itself.
pub fn xdp_pass_object() -> Result<PathBuf> {
    xdp_object("xdp-pass")
}

/// The `xdp-ipip-decap` object (section `xdp`): strips the outer header of IPv4-in-IPv4 and
/// IPv6-in-IPv6 packets and passes the inner one to the stack, for reals of `ipip` virtuals on a
/// kernel without the ipip module.
pub fn xdp_ipip_decap_object() -> Result<PathBuf> {
    xdp_object("xdp-ipip-decap")
}

/// One of the XDP objects lb-userspace's build script leaves in its output directory.
fn xdp_object(name: &str) -> Result<PathBuf> {
    let object = lb_userspace_out_dir()?.join(name);
    let len = fs::metadata(&object)
        .with_context(|| format!("lb-userspace's build script left no {}", object.display()))?
        .len();
    if len == 0 {
        // AYA_BUILD_SKIP=1 writes empty placeholders.
        bail!(
            "{} is empty (built with AYA_BUILD_SKIP?); the lab needs the real object",
            object.display()
        );
    }
    Ok(object)
}

// ---------------------------------------------------------------------------------------------
// up

/// Builds the lab. `httpd` is the xtask binary, whose hidden `lab-httpd` command serves HTTP.
///
/// If the whole lab is already there with its servers running, says so and leaves it; a partial
/// lab (a crash, a half-finished `up` or `down`) is removed and built again. If building fails,
/// what was built is removed again.
pub fn up(httpd: &Path) -> Result<()> {
    if !is_root() {
        bail!("the lab creates network namespaces: run it as root");
    }
    let existing = existing_namespaces()?;
    // RUN_DIR alone may be left too: pid files of servers whose namespace was deleted under them;
    // and pins of an agent killed with the lab (a new agent would find them).
    if !existing.is_empty() || Path::new(RUN_DIR).exists() || !lab_pin_dirs().is_empty() {
        let complete = NAMESPACES.iter().all(|ns| existing.iter().any(|e| e == ns))
            && HOSTS
                .iter()
                .all(|h| h.web.is_none() || server_pid(h).is_some());
        if complete {
            out!(
                "lab: already up, left as it is (`cargo xtask lab down` first to build it afresh)"
            );
            return Ok(());
        }
        out!(
            "lab: found a partial lab (namespaces: {}); removing it first",
            if existing.is_empty() {
                "none".to_owned()
            } else {
                existing.join(" ")
            }
        );
        down()?;
    }
    // Before anything is created, so a failing build leaves nothing behind.
    let xdp_pass = xdp_pass_object()?;
    let started = Instant::now();
    if let Err(error) = build(httpd, &xdp_pass) {
        eout!("lab: up failed; removing what was built");
        if let Err(cleanup) = down() {
            eout!("lab: removing failed too: {cleanup:#}");
        }
        return Err(error.context("lab up"));
    }
    out!(
        "lab: up in {:.1}s: client {}, director {} (VIP {VIP}, {VIP6}), reals {}",
        started.elapsed().as_secs_f64(),
        CLIENT.ipv4,
        DIRECTOR.ipv4,
        REALS.map(|r| r.ipv4.to_string()).join(" "),
    );
    out!(
        "lab: try `ip netns exec {} curl {}`",
        CLIENT.ns,
        http_url(REALS[0].ipv4, CHECK_PATH)
    );
    Ok(())
}

fn build(httpd: &Path, xdp_pass: &Path) -> Result<()> {
    fs::create_dir_all(RUN_DIR).with_context(|| format!("cannot create {RUN_DIR}"))?;
    for ns in NAMESPACES {
        capture(Command::new("ip").args(["netns", "add", ns]))?;
        // A new namespace's loopback is down; the reals' VIPs and 127.0.0.1 need it.
        ip_in(ns, &["link", "set", "dev", "lo", "up"])?;
    }
    // The switch works at layer 2 only; without IPv6 its ports would send their own router
    // solicitations and MLD reports into the lab's captures.
    sysctl_in(
        SWITCH_NS,
        &[
            "net.ipv6.conf.all.disable_ipv6=1",
            "net.ipv6.conf.default.disable_ipv6=1",
        ],
    )?;
    ip_in(
        SWITCH_NS,
        &["link", "add", "name", BRIDGE, "type", "bridge"],
    )?;
    ip_in(SWITCH_NS, &["link", "set", "dev", BRIDGE, "up"])?;

    let xdp_pass = xdp_pass.to_str().context("xdp-pass path is not UTF-8")?;
    for host in HOSTS {
        wire(host, xdp_pass)?;
    }

    let mut servers = Vec::new();
    for host in HOSTS {
        if let Some(web) = host.web {
            servers.push((host, web, spawn_server(httpd, &host, &web)?));
        }
    }
    for (host, web, child) in servers {
        wait_until_serving(&host, &web, child)?;
    }
    Ok(())
}

/// Connects `host` to the switch and gives it its addresses and, per role, VIPs and sysctls.
fn wire(host: Host, xdp_pass: &str) -> Result<()> {
    let (ns, peer) = (host.ns, host.peer);
    // Addresses are usable at once (with `nodad` too, for the link-local ones).
    sysctl_in(
        ns,
        &[
            "net.ipv6.conf.all.accept_dad=0",
            "net.ipv6.conf.default.accept_dad=0",
        ],
    )?;
    // Created in place: an `eth0` in the root namespace would clash with the machine's own.
    ip_in(
        SWITCH_NS,
        &[
            "link", "add", "name", peer, "type", "veth", "peer", "name", HOST_IF, "netns", ns,
        ],
    )?;
    ip_in(ns, &["link", "set", "dev", HOST_IF, "address", host.mac])?;
    ip_in(SWITCH_NS, &["link", "set", "dev", peer, "master", BRIDGE])?;
    // Frames an XDP program forwards carry no checksum for the kernel to complete: with offload
    // on, a veth would pass on partial checksums. Both ends, so either side can forward.
    exec_in(ns, &["ethtool", "-K", HOST_IF, "tx", "off"])?;
    exec_in(SWITCH_NS, &["ethtool", "-K", peer, "tx", "off"])?;
    ip_in(SWITCH_NS, &["link", "set", "dev", peer, "up"])?;
    ip_in(ns, &["link", "set", "dev", HOST_IF, "up"])?;
    // A veth delivers what its peer sends with XDP_TX/redirect only if it runs XDP itself (GRO
    // is not enough on this kernel). On every port, so any host can run XDP later.
    ip_in(
        SWITCH_NS,
        &[
            "link", "set", "dev", peer, "xdpdrv", "obj", xdp_pass, "sec", "xdp",
        ],
    )?;

    add_addr(ns, HOST_IF, &format!("{}/{PREFIX_LEN_V4}", host.ipv4))?;
    add_addr(ns, HOST_IF, &format!("{}/{PREFIX_LEN_V6}", host.ipv6))?;
    match host.role {
        Role::Client => {}
        Role::Director => add_director_vips(&[VIP.into(), VIP6.into()])?,
        Role::Real => {
            add_real_vips(ns, &[VIP.into(), VIP6.into()])?;
            // Direct routing delivers frames addressed to the VIP unchanged: the real accepts them
            // on lo, and must neither answer ARP for the VIP nor use it as an ARP source, or
            // it would steal the VIP from the director. (IPv6 needs nothing: Linux answers
            // neighbour solicitation only for addresses on the asking interface.)
            let mut settings = Vec::new();
            for conf in ["all", HOST_IF, "lo"] {
                settings.push(format!("net.ipv4.conf.{conf}.arp_ignore=1"));
                settings.push(format!("net.ipv4.conf.{conf}.arp_announce=2"));
            }
            sysctl_in(ns, &settings.iter().map(String::as_str).collect::<Vec<_>>())?;
        }
    }
    Ok(())
}

/// The director owns the VIPs on the wire: it answers ARP and neighbour solicitation for them,
/// and with no balancer attached its own stack serves them.
fn add_director_vips(vips: &[IpAddr]) -> Result<()> {
    for vip in vips {
        match vip {
            IpAddr::V4(vip) => add_addr(DIRECTOR.ns, HOST_IF, &format!("{vip}/32"))?,
            // Deprecated (preferred lifetime 0), so the director never picks a VIP6 as the source
            // of its own connections: a health check from it would be answered to the real's own
            // `lo`. (IPv4 prefers the primary address of the subnet already.)
            IpAddr::V6(vip) => ip_in(
                DIRECTOR.ns,
                &[
                    "address",
                    "add",
                    &format!("{vip}/128"),
                    "dev",
                    HOST_IF,
                    "nodad",
                    "preferred_lft",
                    "0",
                ],
            )
            .map(drop)?,
        }
    }
    Ok(())
}

/// A real accepts the VIPs' frames on `lo` (its ARP settings keep it quiet about them).
fn add_real_vips(ns: &str, vips: &[IpAddr]) -> Result<()> {
    for vip in vips {
        let len = if vip.is_ipv4() { 32 } else { 128 };
        add_addr(ns, "lo", &format!("{vip}/{len}"))?;
    }
    Ok(())
}

/// Adds another virtual address to the running lab, set up as [`VIP`] and [`VIP6`] are: on the
/// director's `eth0` and on every real's `lo`. For tests that need several VIPs (the `dh`
/// scheduler spreads by destination); it goes with the lab. Adding one twice is an error.
pub fn add_vip(vip: IpAddr) -> Result<()> {
    add_director_vips(&[vip])?;
    for real in REALS {
        add_real_vips(real.ns, &[vip])?;
    }
    Ok(())
}

fn add_addr(ns: &str, dev: &str, cidr: &str) -> Result<()> {
    let mut args = vec!["address", "add", cidr, "dev", dev];
    if cidr.contains(':') {
        args.push("nodad");
    }
    ip_in(ns, &args).map(drop)
}

/// `sysctl -w` inside `ns`: the net.* tree a process sees is its network namespace's.
fn sysctl_in(ns: &str, settings: &[&str]) -> Result<()> {
    let mut argv = vec!["sysctl", "-q", "-w"];
    argv.extend_from_slice(settings);
    exec_in(ns, &argv).map(drop)
}

fn pid_file(host: &Host) -> PathBuf {
    Path::new(RUN_DIR).join(format!("{}.pid", host.peer))
}

/// Where a host's web server writes its messages.
pub fn server_log(host: &Host) -> PathBuf {
    Path::new(RUN_DIR).join(format!("{}.log", host.peer))
}

/// While this file exists, `host`'s web server fails its health check ([`CHECK_PATH`] answers
/// 503) and serves everything else as usual, established connections included.
pub fn sick_file(host: &Host) -> PathBuf {
    Path::new(RUN_DIR).join(format!("{}.sick", host.peer))
}

/// Makes `host`'s web server fail (or pass again) its health check while it keeps serving.
pub fn set_sick(host: &Host, sick: bool) -> Result<()> {
    let file = sick_file(host);
    let result = if sick {
        fs::write(&file, "")
    } else {
        match fs::remove_file(&file) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    };
    result.with_context(|| {
        format!(
            "cannot {} {}",
            if sick { "create" } else { "remove" },
            file.display()
        )
    })
}

/// Starts `host`'s web server again (after [`stop_server`]) and waits until it serves; `httpd` is
/// the xtask binary, as for [`up`]. Does nothing if it runs.
pub fn start_server(httpd: &Path, host: &Host) -> Result<()> {
    let web = host
        .web
        .with_context(|| format!("{} has no web server", host.ns))?;
    if server_pid(host).is_some() {
        return Ok(());
    }
    let child = spawn_server(httpd, host, &web)?;
    wait_until_serving(host, &web, child)
}

/// Stops `host`'s web server (SIGTERM, then SIGKILL) and waits until it is gone: its port refuses
/// connections and its open connections are closed. Does nothing if it is not running.
pub fn stop_server(host: &Host) -> Result<()> {
    match server_pid(host) {
        Some(pid) => terminate(&[pid]),
        None => Ok(()),
    }
}

fn spawn_server(httpd: &Path, host: &Host, web: &WebServer) -> Result<Child> {
    let log_path = server_log(host);
    let log = fs::File::create(&log_path)
        .with_context(|| format!("cannot create {}", log_path.display()))?;
    let port = HTTP_PORT.to_string();
    let pid_file = pid_file(host);
    let mut command = command_in(host.ns, httpd);
    command
        .args(["lab-httpd", "--name", web.name])
        .args(["--index", web.index_body, "--check", web.check_body])
        .args(["--port", &port])
        .arg("--pid-file")
        .arg(&pid_file)
        .arg("--sick-file")
        .arg(sick_file(host))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        // Its own process group: a Ctrl-C meant for the shell does not take the lab down.
        .process_group(0);
    // `ip netns exec` execs the program, so the child's pid is the server's.
    command
        .spawn()
        .with_context(|| format!("cannot start {command:?}"))
}

/// Waits until the server has bound its port (it writes its pid file then).
fn wait_until_serving(host: &Host, web: &WebServer, mut child: Child) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if server_pid(host).is_some() {
            // Not waited for: the server outlives this process and `down` stops it.
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            let log = fs::read_to_string(server_log(host)).unwrap_or_default();
            bail!(
                "web server {} in {} exited at start ({status}):\n{log}",
                web.name,
                host.ns
            );
        }
        if Instant::now() > deadline {
            bail!(
                "web server {} in {} did not start within 10s; see {}",
                web.name,
                host.ns,
                server_log(host).display()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The pid of `host`'s web server if it runs (its pid file names a live `lab-httpd`).
pub fn server_pid(host: &Host) -> Option<u32> {
    let pid = fs::read_to_string(pid_file(host))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    is_lab_httpd(pid).then_some(pid)
}

/// Guards against a stale pid file naming a pid that now belongs to someone else.
fn is_lab_httpd(pid: u32) -> bool {
    is_alive(pid)
        && fs::read(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|cmdline| cmdline.split(|&b| b == 0).any(|arg| arg == b"lab-httpd"))
}

/// Running, not a zombie (a killed server whose parent is gone may wait to be reaped).
fn is_alive(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        // `pid (comm) S …`; comm may hold spaces and parentheses, the state follows the last ')'.
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
}

// ---------------------------------------------------------------------------------------------
// down

/// Removes the lab: every process inside its namespaces (the web servers, and whatever else was
/// started there: the director, tcpdump, a shell) and every xdirectord of a lab configuration
/// wherever it runs, the namespaces, [`RUN_DIR`], and the lab configurations' pins and pid files.
/// Anything already gone is skipped, so it cleans up after a crash or a half-built lab.
pub fn down() -> Result<()> {
    let existing = existing_namespaces()?;
    let mut pids = Vec::new();
    for ns in &existing {
        // A namespace can vanish between listing and asking; nothing to stop then.
        if let Ok(list) = capture(Command::new("ip").args(["netns", "pids", ns])) {
            pids.extend(
                list.split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
    }
    // Servers whose namespace is gone already (a `down` interrupted half-way) keep running in
    // an unnamed namespace; their pid files still name them.
    if let Ok(entries) = fs::read_dir(RUN_DIR) {
        for entry in entries.flatten() {
            if entry.path().extension().is_some_and(|e| e == "pid")
                && let Ok(text) = fs::read_to_string(entry.path())
                && let Ok(pid) = text.trim().parse::<u32>()
                && is_lab_httpd(pid)
            {
                pids.push(pid);
            }
        }
    }
    // An agent of a lab configuration may run outside the lab's namespaces, and TERM lets one
    // with `cleanstop = yes` remove its own pins.
    pids.extend(lab_agents().into_iter().map(|(_, pid)| pid));
    let me = std::process::id();
    pids.retain(|&p| p != me);
    pids.sort_unstable();
    pids.dedup();
    stop(&pids)?;

    let mut failures = Vec::new();
    for ns in &existing {
        let out = Command::new("ip").args(["netns", "delete", ns]).output()?;
        let gone = !existing_namespaces()?.contains(ns);
        if !out.status.success() && !gone {
            failures.push(format!(
                "ip netns delete {ns}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    match fs::remove_dir_all(RUN_DIR) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            failures.push(format!("cannot remove {RUN_DIR}: {e}"));
        }
        _ => {}
    }
    // What agents left: pins of `cleanstop = no` virtuals (their links named interfaces that are
    // gone with the namespaces) and pid files of killed agents.
    let pins = lab_pin_dirs();
    for dir in &pins {
        if let Err(e) = fs::remove_dir_all(dir) {
            failures.push(format!("cannot remove {}: {e}", dir.display()));
        }
    }
    for pid_file in lab_agent_pid_files() {
        let _ = fs::remove_file(pid_file);
    }
    if !failures.is_empty() {
        bail!("lab down: {}", failures.join("; "));
    }
    if existing.is_empty() && pids.is_empty() && pins.is_empty() {
        out!("lab: nothing to remove");
    } else {
        out!(
            "lab: down (removed {} namespaces, stopped {} processes, removed {} pin directories)",
            existing.len(),
            pids.len(),
            pins.len()
        );
    }
    Ok(())
}

/// Whether an xdirectord configuration (by file name) belongs to the lab: `lab.cf` (the
/// example, examples/lab.cf) and any name starting with [`NS_PREFIX`] (the end-to-end tests'
/// own). `down` stops their agents and removes their pins.
pub fn is_lab_config(name: &str) -> bool {
    name == LAB_CONFIG || name.starts_with(NS_PREFIX)
}

/// The example configuration written for the lab (examples/lab.cf), by its file name.
pub const LAB_CONFIG: &str = "lab.cf";
/// Where xdirectord pins its data planes, one directory per configuration (dots written `_`).
pub const PIN_ROOT: &str = "/sys/fs/bpf/xdirectord";

/// The pin directories of lab configurations that exist now.
pub fn lab_pin_dirs() -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(PIN_ROOT) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| {
            // A pin directory's name is the configuration's with its dots as `_`.
            let name = e.file_name().to_string_lossy().into_owned();
            name == LAB_CONFIG.replace('.', "_") || name.starts_with(NS_PREFIX)
        })
        .map(|e| e.path())
        .collect()
}

/// xdirectord's pid files of lab configurations (`/var/run/xdirectord.<config>.pid`).
fn lab_agent_pid_files() -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir("/var/run") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_prefix("xdirectord.")
                .and_then(|rest| rest.strip_suffix(".pid"))
                .is_some_and(is_lab_config)
        })
        .map(|e| e.path())
        .collect()
}

/// The running xdirectord agents of lab configurations, as (configuration name, pid), from their
/// pid files.
pub fn lab_agents() -> Vec<(String, u32)> {
    lab_agent_pid_files()
        .into_iter()
        .filter_map(|file| {
            let pid: u32 = fs::read_to_string(&file).ok()?.trim().parse().ok()?;
            let name = file.file_name()?.to_string_lossy();
            let config = name
                .strip_prefix("xdirectord.")?
                .strip_suffix(".pid")?
                .to_owned();
            let is_xdirectord = fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                c.split(|&b| b == 0)
                    .next()
                    .is_some_and(|argv0| argv0.ends_with(b"xdirectord"))
            });
            (is_alive(pid) && is_xdirectord).then_some((config, pid))
        })
        .collect()
}

/// SIGTERM, two seconds' grace, then SIGKILL.
fn stop(pids: &[u32]) -> Result<()> {
    if pids.is_empty() {
        return Ok(());
    }
    let named: Vec<String> = pids
        .iter()
        .map(|p| {
            let comm = fs::read_to_string(format!("/proc/{p}/comm")).unwrap_or_default();
            format!("{p} ({})", comm.trim())
        })
        .collect();
    out!("lab: stopping {}", named.join(", "));
    terminate(pids)
}

/// [`stop`] without a word.
fn terminate(pids: &[u32]) -> Result<()> {
    let ids: Vec<String> = pids.iter().map(u32::to_string).collect();
    for (signal, grace) in [("-TERM", 2000), ("-KILL", 1000)] {
        let alive: Vec<&String> = ids
            .iter()
            .filter(|p| p.parse().is_ok_and(is_alive))
            .collect();
        if alive.is_empty() {
            return Ok(());
        }
        // The exit status is ignored: a process may exit between the check and the signal.
        Command::new("kill")
            .arg(signal)
            .args(alive)
            .stderr(Stdio::null())
            .status()
            .context("cannot start kill")?;
        let deadline = Instant::now() + Duration::from_millis(grace);
        while Instant::now() < deadline && pids.iter().any(|&p| is_alive(p)) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let left: Vec<String> = pids
        .iter()
        .filter(|&&p| is_alive(p))
        .map(u32::to_string)
        .collect();
    if !left.is_empty() {
        bail!("processes {} survived SIGKILL", left.join(" "));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// status

/// The XDP program attached to `dev` in `ns`, e.g. `xdpdrv prog 42 xdp_pass`; None if there is
/// none.
pub fn xdp_on(ns: &str, dev: &str) -> Result<Option<String>> {
    let json = ip_in(ns, &["-j", "link", "show", "dev", dev])?;
    let links: serde_json::Value =
        serde_json::from_str(&json).with_context(|| format!("ip -j link show: {json}"))?;
    let Some(xdp) = links.get(0).and_then(|l| l.get("xdp")) else {
        return Ok(None);
    };
    // iproute2 lists each attachment, or for a single one only the top-level prog.
    let attached = match xdp.get("attached").and_then(|a| a.as_array()) {
        Some(list) => list.clone(),
        None => vec![xdp.clone()],
    };
    let described: Vec<String> = attached
        .iter()
        .map(|a| {
            let mode = match a["mode"].as_u64() {
                Some(1) => "xdpdrv",
                Some(2) => "xdpgeneric",
                Some(3) => "xdpoffload",
                _ => "xdp",
            };
            format!(
                "{mode} prog {} {}",
                a["prog"]["id"],
                a["prog"]["name"].as_str().unwrap_or("")
            )
            .trim_end()
            .to_owned()
        })
        .collect();
    Ok(Some(described.join(", ")))
}

/// The global addresses of each interface in `ns` (no loopback or link-local ones), as
/// `(interface, ["10.200.0.11/24", …])`.
pub fn addresses(ns: &str) -> Result<Vec<(String, Vec<String>)>> {
    let json = ip_in(ns, &["-j", "address", "show"])?;
    let links: serde_json::Value =
        serde_json::from_str(&json).with_context(|| format!("ip -j address show: {json}"))?;
    let mut result = Vec::new();
    for link in links.as_array().into_iter().flatten() {
        let addrs: Vec<String> = link["addr_info"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|a| a["scope"] == "global")
            .filter_map(|a| Some(format!("{}/{}", a["local"].as_str()?, a["prefixlen"])))
            .collect();
        if !addrs.is_empty() {
            result.push((link["ifname"].as_str().unwrap_or("?").to_owned(), addrs));
        }
    }
    Ok(result)
}

/// xdirectord agents of lab configurations and their pins (`down` removes both).
fn print_agents_and_pins() {
    for (config, pid) in lab_agents() {
        out!("xdirectord    {config} running (pid {pid})");
    }
    for dir in lab_pin_dirs() {
        out!("pins          {}", dir.display());
    }
}

/// `cargo xtask lab status`.
pub fn print_status() -> Result<()> {
    let existing = existing_namespaces()?;
    if existing.is_empty() {
        out!("lab: down (no {NS_PREFIX}* namespaces)");
        print_agents_and_pins();
        return Ok(());
    }
    let missing: Vec<&str> = NAMESPACES
        .into_iter()
        .filter(|ns| !existing.iter().any(|e| e == ns))
        .collect();
    if missing.is_empty() {
        out!("lab: up");
    } else {
        out!(
            "lab: partial, missing {} (`cargo xtask lab down` removes the rest)",
            missing.join(" ")
        );
    }
    for host in HOSTS {
        if !existing.iter().any(|e| e == host.ns) {
            continue;
        }
        let mut lines = Vec::new();
        for (dev, addrs) in addresses(host.ns)? {
            lines.push(format!("{dev:<5}{}", addrs.join(" ")));
        }
        if let Some(web) = host.web {
            lines.push(match server_pid(&host) {
                Some(pid) => format!("web server {} up (pid {pid})", web.name),
                None => format!(
                    "web server {} DOWN (log: {})",
                    web.name,
                    server_log(&host).display()
                ),
            });
        }
        if host.role == Role::Director {
            let xdp = xdp_on(host.ns, HOST_IF)
                .ok()
                .flatten()
                .unwrap_or_else(|| "none".to_owned());
            lines.push(format!("XDP on {HOST_IF}: {xdp}"));
        }
        for (i, line) in lines.iter().enumerate() {
            let first = if i == 0 { host.ns } else { "" };
            out!("{first:<13} {line}");
        }
        if lines.is_empty() {
            out!("{}", host.ns);
        }
    }
    if existing.iter().any(|e| e == SWITCH_NS) {
        let mut ports = Vec::new();
        for host in HOSTS {
            ports.push(match xdp_on(SWITCH_NS, host.peer) {
                Ok(Some(x)) => format!("{} ({x})", host.peer),
                Ok(None) => format!("{} (no XDP)", host.peer),
                Err(_) => format!("{} MISSING", host.peer),
            });
        }
        out!("{SWITCH_NS:<13} {BRIDGE} ports: {}", ports.join(", "));
    }
    print_agents_and_pins();
    let others: Vec<&String> = existing
        .iter()
        .filter(|e| !NAMESPACES.contains(&e.as_str()))
        .collect();
    if !others.is_empty() {
        out!(
            "also: {} (not part of this lab; `down` removes them)",
            others
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_ids() {
        assert_eq!(
            package_name_of_id("path+file:///work/main/lb-userspace#0.1.0"),
            Some("lb-userspace")
        );
        assert_eq!(
            package_name_of_id("path+file:///src/xd#lb-userspace@0.1.0"),
            Some("lb-userspace")
        );
        assert_eq!(
            package_name_of_id("registry+https://github.com/rust-lang/crates.io-index#libc@0.2.1"),
            Some("libc")
        );
        assert_eq!(
            package_name_of_id("lb-userspace 0.1.0 (path+file:///work/main/lb-userspace)"),
            Some("lb-userspace")
        );
    }

    #[test]
    fn addresses_are_consistent() {
        for real in REALS {
            assert_eq!(
                real.ipv6.segments()[7],
                0x10 + u16::from(real.ipv4.octets()[3] - 10)
            );
            let mac_last = u8::from_str_radix(&real.mac[15..], 16).unwrap();
            assert_eq!(mac_last, real.ipv4.octets()[3]);
        }
        assert_eq!(REALS[0].ipv6, "fd00:200::11".parse::<Ipv6Addr>().unwrap());
        assert_eq!(
            http_url(VIP6, CHECK_PATH),
            "http://[fd00:200::100]/areyouthere.php"
        );
    }
}
