//! A director for the operations tests (the Debian package and its systemd unit, Pacemaker,
//! heartbeat), where a supervisor starts and stops xdirectord the way it does in production:
//!
//! ```text
//!  <prefix>-dir-…                               <prefix>-wire-…
//!  d0 10.98.0.2/24 + VIP 10.98.0.100  <-veth->  w0 (a raw socket: frames in, frames back)
//!  neighbour: real 10.98.0.11 at REAL_MAC
//! ```
//!
//! The agent attaches in generic mode to `d0` (no XDP program needed on the peer); a SYN to the
//! VIP sent from the wire comes back out of `d0` towards the real's MAC when the XDP program
//! forwards it, and does not come back when nothing balances the VIP (the director's own stack
//! takes it). Commands run under `nsenter --net`, in the director's network namespace but the
//! host's mount namespace, so the agent's pins are the host's and outlive it.
//!
//! Everything is removed on drop (the namespaces, with their veth), also when a test fails.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use crate::netns::{NetNs, PacketSocket};
use crate::packet::{Frame, SYN};

pub const VIP: &str = "10.98.0.100";
/// A second VIP, for configurations that grow on reload (not on `d0`: the XDP program needs none).
pub const VIP2: &str = "10.98.0.101";
pub const REAL: &str = "10.98.0.11";
pub const REAL_MAC: [u8; 6] = [0x02, 0, 0x0a, 0x62, 0, 0x0b];
const CLIENT: &str = "10.98.0.50";

/// How long a frame may take to come back before it counts as not forwarded.
const FRAME_WAIT: Duration = Duration::from_secs(2);
/// How long the agent may take to put its table in place.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// The director's and the wire's namespaces, and a raw socket on the wire.
pub struct Director {
    pub ns: NetNs,
    pub wire: NetNs,
    d0_mac: [u8; 6],
    socket: PacketSocket,
    next_port: AtomicU16,
}

impl Director {
    /// Namespaces named `<prefix>-dir-<pid>-<n>` and `<prefix>-wire-<pid>-<n>`.
    pub fn new(prefix: &str) -> Director {
        let ns = NetNs::new(&format!("{prefix}-dir"));
        let wire = NetNs::new(&format!("{prefix}-wire"));
        ns.ip(&[
            "link", "add", "d0", "type", "veth", "peer", "name", "w0", "netns", &wire.name,
        ]);
        ns.ip(&["addr", "add", "10.98.0.2/24", "dev", "d0"]);
        ns.ip(&["addr", "add", &format!("{VIP}/32"), "dev", "d0"]);
        ns.ip(&["link", "set", "d0", "up"]);
        wire.ip(&["link", "set", "w0", "up"]);
        let mac = REAL_MAC.map(|b| format!("{b:02x}")).join(":");
        ns.ip(&[
            "neigh",
            "add",
            REAL,
            "lladdr",
            &mac,
            "dev",
            "d0",
            "nud",
            "permanent",
        ]);
        let d0_mac = interface_mac(&ns, "d0");
        // A socket belongs to the namespace it was opened in: open it from a thread there.
        let socket = std::thread::scope(|s| {
            s.spawn(|| {
                wire.enter();
                PacketSocket::open("w0")
            })
            .join()
            .expect("open the wire's socket")
        });
        Director {
            ns,
            wire,
            d0_mac,
            socket,
            next_port: AtomicU16::new(20000),
        }
    }

    /// `/var/run/netns/<director>`, for `nsenter --net=`.
    pub fn netns_path(&self) -> PathBuf {
        Path::new("/var/run/netns").join(&self.ns.name)
    }

    /// `nsenter --net=<director> PROGRAM`: in the director's network namespace, the host's mounts.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--net={}", self.netns_path().display()))
            .arg(program);
        command
    }

    /// A configuration for this director: the VIP (and `more`, more virtual services) with the
    /// one real, `checktype = on` (up at its first check, no server needed), logging to `log`.
    pub fn config(&self, log: &Path, globals: &str, more: &str) -> String {
        format!(
            "logfile=\"{}\"\ninterface=d0\nxdpmode=generic\ncheckinterval=1\n{globals}\
             virtual={VIP}:80\n\treal={REAL}:80 gate\n\tchecktype=on\n{more}",
            log.display()
        )
    }

    /// A virtual service on `vip` with the one real, for `more` above.
    pub fn virtual_service(vip: &str) -> String {
        format!("virtual={vip}:80\n\treal={REAL}:80 gate\n\tchecktype=on\n")
    }

    /// Sends one new connection's SYN to `vip`:80 from the wire; the destination MAC of the frame
    /// that comes back out of the director, if one does.
    pub fn send_syn(&self, vip: &str) -> Option<[u8; 6]> {
        let port = self.next_port.fetch_add(1, Ordering::Relaxed);
        let mut frame = Frame::tcp(CLIENT, port, vip, 80, SYN);
        frame.dst_mac = self.d0_mac;
        let bytes = frame.bytes();
        self.socket.send(&bytes);
        let back = self.socket.receive(FRAME_WAIT, |f| {
            f.len() == bytes.len() && f[12..] == bytes[12..]
        })?;
        Some(back[..6].try_into().expect("six bytes"))
    }

    /// Whether a new connection to `vip` is forwarded to the real right now.
    pub fn forwards(&self, vip: &str) -> bool {
        self.send_syn(vip) == Some(REAL_MAC)
    }

    /// Waits until the data plane forwards to `vip`; `context` (a log, say) explains a failure.
    pub fn wait_until_forwarding(&self, vip: &str, context: impl Fn() -> String) {
        let deadline = Instant::now() + PATIENCE;
        while !self.forwards(vip) {
            assert!(
                Instant::now() < deadline,
                "{vip} is not forwarded to the real\n{}",
                context()
            );
        }
    }
}

fn interface_mac(ns: &NetNs, interface: &str) -> [u8; 6] {
    let text = ns.ip(&["-br", "link", "show", interface]);
    let field = text.split_whitespace().nth(2).expect("a MAC field");
    let bytes: Vec<u8> = field
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).expect("hex"))
        .collect();
    bytes.try_into().expect("six bytes")
}

/// Whether `pid` is a live process (not a zombie) whose command line mentions xdirectord.
pub fn is_xdirectord(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|c| c.windows(b"xdirectord".len()).any(|w| w == b"xdirectord"))
}
