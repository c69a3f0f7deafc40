//! Real servers for the protocol checks' tests, started by the tests themselves: Debian's own
//! daemons (installed by `cargo xtask setup`), each with private data and run directories in
//! a temporary directory, on loopback ports picked free, in the foreground as a child of the
//! test. A [`Server`] stops its process group and removes its directory when dropped, also
//! when a test fails; the children also get SIGKILL if the test process dies
//! (`PR_SET_PDEATHSIG`).
//!
//! Also: [`ldirectord`], ldirectord's own check functions run against the same server, to
//! compare verdicts. The servers more than one test binary starts are here ([`nnrpd`],
//! [`mariadb`]); lb-userspace's agent tests include this module too.

#![allow(dead_code, reason = "each test binary uses a different part")]

mod daemons;
pub use daemons::*;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a server may take to start listening (mariadb and postgres take seconds on a
/// loaded two-core machine).
const START_TIMEOUT: Duration = Duration::from_secs(60);

pub const V4: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
pub const V6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);

/// A running server: its process (group) and its private directory.
pub struct Server {
    name: String,
    child: Option<Child>,
    /// Removed when the server is dropped, after the process has gone.
    pub dir: tempfile::TempDir,
}

impl Server {
    /// A directory for a server about to start, readable by every user (the daemons that
    /// drop privileges must reach their files).
    pub fn dir(name: &str) -> tempfile::TempDir {
        let dir = tempfile::Builder::new()
            .prefix(&format!("xdt-{name}-"))
            .tempdir()
            .expect("temporary directory");
        set_mode(dir.path(), 0o755);
        dir
    }

    /// Starts `command` in its own process group, its output in `<dir>/<name>.out`.
    pub fn start(name: &str, dir: tempfile::TempDir, command: &mut Command) -> Server {
        let out = std::fs::File::create(dir.path().join(format!("{name}.out"))).unwrap();
        let err = out.try_clone().unwrap();
        command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("start {name} ({command:?}): {e}"));
        Server {
            name: name.to_owned(),
            child: Some(child),
            dir,
        }
    }

    /// Waits until `addr` accepts TCP connections; panics with the server's output if it does
    /// not, or if the server exits.
    pub fn wait_tcp(&mut self, addr: SocketAddr) {
        self.wait_until(addr, || {
            TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
        });
    }

    /// Waits until something listens on UDP `addr` (the kernel no longer refuses a datagram).
    pub fn wait_udp(&mut self, addr: SocketAddr) {
        self.wait_until(addr, || udp_port_open(addr));
    }

    fn wait_until(&mut self, addr: SocketAddr, mut ready: impl FnMut() -> bool) {
        let start = Instant::now();
        loop {
            if ready() {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "{} exited ({status}) before listening on {addr}:\n{}",
                    self.name,
                    self.output()
                );
            }
            assert!(
                start.elapsed() < START_TIMEOUT,
                "{} did not listen on {addr} within {START_TIMEOUT:?}:\n{}",
                self.name,
                self.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What the server wrote so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{}.out", self.name)))
            .unwrap_or_default()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let group = -(child.id() as i32);
        // SAFETY: kill has no memory-safety preconditions; the group is our child's.
        unsafe { libc::kill(group, libc::SIGTERM) };
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if child.try_wait().ok().flatten().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // SAFETY: as above; whatever is left of the group is killed.
        unsafe { libc::kill(group, libc::SIGKILL) };
        let _ = child.wait();
    }
}

/// A TCP port free on both 127.0.0.1 and ::1 now (servers listen on both).
pub fn free_port() -> u16 {
    loop {
        let v4 = TcpListener::bind((V4, 0)).unwrap();
        let port = v4.local_addr().unwrap().port();
        if TcpListener::bind((V6, port)).is_ok()
            && UdpSocket::bind((V4, port)).is_ok()
            && UdpSocket::bind((V6, port)).is_ok()
        {
            return port;
        }
    }
}

/// Whether a UDP datagram to `addr` is not refused (an ICMP port unreachable comes back as
/// ECONNREFUSED on the next receive).
fn udp_port_open(addr: SocketAddr) -> bool {
    let local: SocketAddr = if addr.is_ipv4() {
        (V4, 0).into()
    } else {
        (V6, 0).into()
    };
    let socket = UdpSocket::bind(local).unwrap();
    socket.connect(addr).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let _ = socket.send(b"\0");
    let mut buf = [0u8; 16];
    match socket.recv(&mut buf) {
        Ok(_) => true,
        Err(e) => e.kind() != std::io::ErrorKind::ConnectionRefused,
    }
}

/// A port nothing listens on (TCP and UDP), for "nothing listening" cases.
pub fn closed_port() -> u16 {
    free_port()
}

/// A server that accepts connections (or receives datagrams) and never answers: the stall
/// cases. Runs until dropped.
pub struct Stall {
    pub tcp: SocketAddr,
    pub udp: SocketAddr,
    _listener: TcpListener,
    _socket: UdpSocket,
}

impl Stall {
    pub fn on(ip: IpAddr) -> Stall {
        let listener = TcpListener::bind((ip, 0)).unwrap();
        let socket = UdpSocket::bind((ip, 0)).unwrap();
        Stall {
            tcp: listener.local_addr().unwrap(),
            udp: socket.local_addr().unwrap(),
            // The kernel completes handshakes into the backlog; nobody ever accepts or reads.
            _listener: listener,
            _socket: socket,
        }
    }
}

pub fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(
        path,
        <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(mode),
    )
    .unwrap();
}

/// `chown -R user: path`.
pub fn chown(path: &Path, user: &str) {
    let status = Command::new("chown")
        .arg("-R")
        .arg(format!("{user}:"))
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success(), "chown {user} {}", path.display());
}

/// A user's uid and gid (from `id`).
pub fn ids(user: &str) -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let out = Command::new("id").arg(flag).arg(user).output().unwrap();
        assert!(out.status.success(), "no user {user}");
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    };
    (id("-u"), id("-g"))
}

/// Runs a command to completion; panics with its output if it fails.
pub fn run(command: &mut Command) -> String {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("run {command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A CA and a server certificate it signed for `names` (IP addresses or DNS names), PEM.
pub struct Certificates {
    pub ca_der: Vec<u8>,
    pub cert_pem: String,
    pub key_pem: String,
}

pub fn certificates(names: &[&str]) -> Certificates {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, SanType};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "xdirectord test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.subject_alt_names = names
        .iter()
        .map(|n| match n.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName((*n).try_into().unwrap()),
        })
        .collect();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, names[0]);
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    Certificates {
        ca_der: ca.der().to_vec(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

/// ldirectord's verdict, from a blocking task: see [`ldirectord`].
pub async fn ldirectord_says(
    service: &str,
    real: SocketAddr,
    settings: &[(&str, &str)],
) -> Option<bool> {
    let service = service.to_owned();
    let settings: Vec<(String, String)> = settings
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    tokio::task::spawn_blocking(move || {
        let settings: Vec<(&str, &str)> = settings
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        ldirectord(&service, real.ip(), real.port(), &settings)
    })
    .await
    .unwrap()
}

/// ldirectord's verdict: its own `check_<service>` function from /usr/sbin/ldirectord, run by
/// Perl against `real:port` with these virtual settings (`login`, `passwd`, `request`, …;
/// a key `ENV:NAME` sets the environment variable NAME instead, e.g. `ENV:SSL_CERT_FILE`).
/// `None` when ldirectord's check died instead of giving a verdict.
pub fn ldirectord(
    service: &str,
    real: IpAddr,
    port: u16,
    settings: &[(&str, &str)],
) -> Option<bool> {
    // Found from lb-health's tests and from lb-userspace's, which include this module.
    let harness =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../lb-health/tests/servers/ldirectord.pl");
    let server = match real {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    };
    let mut command = Command::new("perl");
    command
        .arg(harness)
        .arg(service)
        .arg(format!("server={server}"))
        .arg(format!("port={port}"));
    for (key, value) in settings {
        match key.strip_prefix("ENV:") {
            Some(name) => command.env(name, value),
            None => command.arg(format!("{key}={value}")),
        };
    }
    let started = Instant::now();
    let out = command.output().expect("run perl");
    eprintln!("ldirectord's {service} check took {:?}", started.elapsed());
    let stdout = String::from_utf8_lossy(&out.stdout);
    match stdout.lines().last() {
        Some("up") => Some(true),
        Some("down") => Some(false),
        _ => {
            eprintln!(
                "ldirectord's check gave no verdict: {}\n{}",
                stdout,
                String::from_utf8_lossy(&out.stderr)
            );
            None
        }
    }
}

/// A server that sends `bytes` to every client, then keeps the connection open and reads
/// nothing: garbage, an endless line, a huge banner. Runs until dropped.
pub struct Sends {
    pub addr: SocketAddr,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Sends {
    pub fn on(ip: IpAddr, bytes: Vec<u8>) -> Sends {
        let listener = TcpListener::bind((ip, 0)).unwrap();
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = std::sync::Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut open = Vec::new();
            while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        let bytes = bytes.clone();
                        stream.set_nonblocking(false).unwrap();
                        let keep = stream.try_clone().unwrap();
                        std::thread::spawn(move || {
                            use std::io::Write as _;
                            let _ = stream.write_all(&bytes);
                        });
                        open.push(keep);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Sends { addr, stop }
    }
}

impl Drop for Sends {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}
