//! Named network namespaces for tests: made with `ip netns add`, entered per thread with
//! setns(2), and always deleted (with everything in them) when the guard drops, also when the
//! test fails.

use std::{fs::File, os::fd::AsRawFd, process::Command};

use crate::harness::run;

/// A named network namespace, deleted on drop.
pub struct NetNs {
    pub name: String,
}

impl NetNs {
    /// `ip netns add <prefix>-<pid>-<n>`: unique per process and call.
    pub fn new(prefix: &str) -> NetNs {
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("{prefix}-{}-{n}", std::process::id());
        run(&["ip", "netns", "add", &name]);
        run(&["ip", "-n", &name, "link", "set", "lo", "up"]);
        NetNs { name }
    }

    /// Runs `ip -n <ns> ARGS…`.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut argv = vec!["ip", "-n", &self.name];
        argv.extend_from_slice(args);
        run(&argv)
    }

    /// Runs a command inside the namespace (`ip netns exec`).
    pub fn exec(&self, argv: &[&str]) -> String {
        let mut full = vec!["ip", "netns", "exec", &self.name];
        full.extend_from_slice(argv);
        run(&full)
    }

    /// Moves the calling thread into the namespace.
    pub fn enter(&self) {
        let file = File::open(format!("/var/run/netns/{}", self.name)).expect("netns file");
        // SAFETY: a namespace fd, for the calling thread only.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(
            rc,
            0,
            "setns {}: {}",
            self.name,
            std::io::Error::last_os_error()
        );
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A raw packet socket on one interface (of the calling thread's namespace).
pub struct PacketSocket {
    fd: i32,
    ifindex: i32,
}

const ETH_P_ALL: u16 = 0x0003;
const PACKET_OUTGOING: u8 = 4;

impl PacketSocket {
    pub fn open(interface: &str) -> PacketSocket {
        // SAFETY: plain socket calls with checked results.
        unsafe {
            let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, ETH_P_ALL.to_be() as i32);
            assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
            let name = std::ffi::CString::new(interface).unwrap();
            let ifindex = libc::if_nametoindex(name.as_ptr()) as i32;
            assert!(ifindex > 0, "no interface {interface}");
            let mut addr: libc::sockaddr_ll = std::mem::zeroed();
            addr.sll_family = libc::AF_PACKET as u16;
            addr.sll_protocol = ETH_P_ALL.to_be();
            addr.sll_ifindex = ifindex;
            let rc = libc::bind(
                fd,
                &addr as *const _ as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            );
            assert_eq!(rc, 0, "bind: {}", std::io::Error::last_os_error());
            let timeout = libc::timeval {
                tv_sec: 0,
                tv_usec: 100_000,
            };
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                &timeout as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::timeval>() as u32,
            );
            PacketSocket { fd, ifindex }
        }
    }

    pub fn send(&self, frame: &[u8]) {
        // SAFETY: as above.
        unsafe {
            let mut addr: libc::sockaddr_ll = std::mem::zeroed();
            addr.sll_family = libc::AF_PACKET as u16;
            addr.sll_ifindex = self.ifindex;
            addr.sll_halen = 6;
            addr.sll_addr[..6].copy_from_slice(&frame[..6]);
            let n = libc::sendto(
                self.fd,
                frame.as_ptr() as *const libc::c_void,
                frame.len(),
                0,
                &addr as *const _ as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            );
            assert_eq!(
                n,
                frame.len() as isize,
                "sendto: {}",
                std::io::Error::last_os_error()
            );
        }
    }

    /// The next frame received (not one we sent) that `want` accepts, waiting at most `wait`.
    pub fn receive(
        &self,
        wait: std::time::Duration,
        want: impl Fn(&[u8]) -> bool,
    ) -> Option<Vec<u8>> {
        let deadline = std::time::Instant::now() + wait;
        let mut buf = vec![0u8; 2048];
        while std::time::Instant::now() < deadline {
            // SAFETY: as above.
            let (n, pkttype) = unsafe {
                let mut from: libc::sockaddr_ll = std::mem::zeroed();
                let mut len = std::mem::size_of::<libc::sockaddr_ll>() as u32;
                let n = libc::recvfrom(
                    self.fd,
                    buf.as_mut_ptr() as *mut libc::c_void,
                    buf.len(),
                    0,
                    &mut from as *mut _ as *mut libc::sockaddr,
                    &mut len,
                );
                (n, from.sll_pkttype)
            };
            if n < 0 {
                let err = std::io::Error::last_os_error();
                assert_eq!(
                    err.kind(),
                    std::io::ErrorKind::WouldBlock,
                    "recvfrom: {err}"
                );
                continue;
            }
            if pkttype != PACKET_OUTGOING && want(&buf[..n as usize]) {
                return Some(buf[..n as usize].to_vec());
            }
        }
        None
    }
}

impl Drop for PacketSocket {
    fn drop(&mut self) {
        // SAFETY: our own fd.
        unsafe { libc::close(self.fd) };
    }
}

/// A raw IP socket of the calling thread's namespace: sends packets whose IP header the caller
/// writes (`IPPROTO_RAW`; the kernel fills in an IPv4 header's checksum) or, with another
/// protocol, whose payload it writes after the kernel's header. Closed on drop.
pub struct RawIp {
    fd: i32,
}

impl RawIp {
    /// A raw socket of `family` (`AF_INET`, `AF_INET6`) for `protocol`.
    pub fn open(family: i32, protocol: i32) -> RawIp {
        // SAFETY: a plain socket call; the descriptor is closed on drop.
        let fd = unsafe { libc::socket(family, libc::SOCK_RAW, protocol) };
        assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
        RawIp { fd }
    }

    /// Sends `packet` towards `to`.
    pub fn send(&self, to: std::net::IpAddr, packet: &[u8]) {
        let addr = socket2::SockAddr::from(std::net::SocketAddr::new(to, 0));
        // SAFETY: the address and the packet outlive the call.
        let sent = unsafe {
            libc::sendto(
                self.fd,
                packet.as_ptr().cast(),
                packet.len(),
                0,
                addr.as_ptr().cast(),
                addr.len(),
            )
        };
        assert_eq!(
            sent,
            packet.len() as isize,
            "sendto {to}: {}",
            std::io::Error::last_os_error()
        );
    }
}

impl Drop for RawIp {
    fn drop(&mut self) {
        // SAFETY: our own descriptor, closed once.
        unsafe { libc::close(self.fd) };
    }
}
