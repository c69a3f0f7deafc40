//! `checktype = ping` (and `connect` over UDP): ICMP / ICMPv6 echo.
//!
//! As ldirectord's Net::Ping ("icmp", 64 data bytes): up to `checkcount` attempts, each waiting
//! `checktimeout` for a reply, up on the first reply.
//!
//! One socket per address family is shared by every ping of a runner, instead of one socket
//! per check: a raw ICMP socket receives a copy of *every* ICMP packet the host gets, so
//! 10,000 raw sockets would copy each reply 10,000 times. Replies are matched to waiting pings
//! by (source address, sequence number) plus a token in the payload, and whichever waiting
//! ping is woken reads the socket and hands each reply to its owner, so no background task is
//! needed. Raw sockets are used (we run as root); unprivileged ping sockets
//! (`SOCK_DGRAM`, allowed by `net.ipv4.ping_group_range`) are the fallback.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::io;
use std::mem::MaybeUninit;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::io::unix::AsyncFd;
use tokio::sync::oneshot;

use crate::outcome::Outcome;

/// Net::Ping's default data size.
const DATA_BYTES: usize = 64;
const HEADER_BYTES: usize = 8;
const ECHO_REQUEST_V4: u8 = 8;
const ECHO_REPLY_V4: u8 = 0;
const ECHO_REQUEST_V6: u8 = 128;
const ECHO_REPLY_V6: u8 = 129;

/// The per-runner ping sockets, opened on first use.
#[derive(Default)]
pub(crate) struct Pinger {
    v4: OnceLock<Result<Arc<IcmpSocket>, String>>,
    v6: OnceLock<Result<Arc<IcmpSocket>, String>>,
}

impl std::fmt::Debug for Pinger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pinger").finish_non_exhaustive()
    }
}

impl Pinger {
    /// Up to `count` echo requests, each given `timeout` to be answered.
    pub(crate) async fn check(&self, ip: IpAddr, count: u32, timeout: Duration) -> Outcome {
        let socket = match self.socket(ip) {
            Ok(s) => s,
            Err(e) => return Outcome::down(format!("ping: {e}")),
        };
        let mut last_error = None;
        for _ in 0..count.max(1) {
            match socket.ping_once(ip, timeout).await {
                Ok(true) => return Outcome::up("echo reply"),
                Ok(false) => {}
                Err(e) => last_error = Some(e),
            }
        }
        match last_error {
            Some(e) => Outcome::down(format!("ping {ip}: {e}")),
            None => Outcome::down(format!("ping {ip}: no reply to {count} echo requests")),
        }
    }

    fn socket(&self, ip: IpAddr) -> Result<Arc<IcmpSocket>, String> {
        let cell = if ip.is_ipv4() { &self.v4 } else { &self.v6 };
        cell.get_or_init(|| IcmpSocket::open(ip.is_ipv6()).map(Arc::new))
            .clone()
    }
}

type Waiters = HashMap<(IpAddr, u16), oneshot::Sender<()>>;

struct IcmpSocket {
    fd: AsyncFd<Socket>,
    v6: bool,
    /// Raw sockets see IPv4 headers and every host's echo traffic; ping sockets see neither.
    raw: bool,
    /// Our echo identifier (raw sockets; ping sockets get the kernel's).
    ident: u16,
    /// Marks our replies apart from other programs' echo traffic on a raw socket.
    token: [u8; 8],
    next_seq: AtomicU16,
    waiters: Mutex<Waiters>,
}

impl IcmpSocket {
    fn open(v6: bool) -> Result<IcmpSocket, String> {
        let (domain, protocol) = if v6 {
            (Domain::IPV6, Protocol::ICMPV6)
        } else {
            (Domain::IPV4, Protocol::ICMPV4)
        };
        let (socket, raw) = match Socket::new(domain, Type::RAW, Some(protocol)) {
            Ok(s) => (s, true),
            Err(raw_err) => match Socket::new(domain, Type::DGRAM, Some(protocol)) {
                Ok(s) => (s, false),
                Err(e) => return Err(format!("no raw socket ({raw_err}) nor ping socket ({e})")),
            },
        };
        socket
            .set_nonblocking(true)
            .map_err(|e| format!("nonblocking: {e}"))?;
        // Many pings can be answered between two reads; a larger buffer avoids drops.
        let _ = socket.set_recv_buffer_size(1 << 20);
        // SAFETY: the socket owns its descriptor and moves into the AsyncFd, which owns it
        // until it is dropped; socket2's `as_raw_fd` always returns that same descriptor.
        let fd = unsafe { AsyncFd::register(socket) }.map_err(|e| format!("register: {e}"))?;
        Ok(IcmpSocket {
            fd,
            v6,
            raw,
            ident: fastrand::u16(..),
            token: fastrand::u64(..).to_be_bytes(),
            next_seq: AtomicU16::new(fastrand::u16(..)),
            waiters: Mutex::new(HashMap::new()),
        })
    }

    /// One echo request; `Ok(true)` when answered within `timeout`.
    async fn ping_once(&self, ip: IpAddr, timeout: Duration) -> io::Result<bool> {
        let (seq, mut answered) = self.register(ip);
        // Removes the waiter however this attempt ends, including cancellation.
        let _guard = WaiterGuard {
            socket: self,
            key: (ip, seq),
        };
        let packet = self.echo_request(seq);
        let target = SockAddr::from(SocketAddr::new(ip, 0));
        loop {
            let mut ready = self.fd.writable().await?;
            match ready.try_io(|s| s.get_ref().send_to(&packet, &target)) {
                Ok(result) => {
                    result?;
                    break;
                }
                Err(_would_block) => continue,
            }
        }
        let wait = async {
            loop {
                tokio::select! {
                    biased;
                    _ = &mut answered => return Ok(()),
                    ready = self.fd.readable() => {
                        let mut ready = ready?;
                        // Read everything there is, handing each reply to its waiter; then
                        // wait for readiness again.
                        loop {
                            match ready.try_io(|s| self.receive_one(s.get_ref())) {
                                Ok(Ok(())) => continue,
                                Ok(Err(e)) => return Err(e),
                                Err(_would_block) => break,
                            }
                        }
                    }
                }
            }
        };
        match tokio::time::timeout(timeout, wait).await {
            Ok(Ok(())) => Ok(true),
            Ok(Err(e)) => Err(e),
            Err(_elapsed) => Ok(false),
        }
    }

    fn register(&self, ip: IpAddr) -> (u16, oneshot::Receiver<()>) {
        let (tx, rx) = oneshot::channel();
        let mut waiters = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            // Sequence numbers wrap after 65,536 pings; skip one still waiting for the same
            // address.
            let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
            if let Entry::Vacant(slot) = waiters.entry((ip, seq)) {
                slot.insert(tx);
                return (seq, rx);
            }
        }
    }

    fn echo_request(&self, seq: u16) -> [u8; HEADER_BYTES + DATA_BYTES] {
        let mut packet = [0u8; HEADER_BYTES + DATA_BYTES];
        packet[0] = if self.v6 {
            ECHO_REQUEST_V6
        } else {
            ECHO_REQUEST_V4
        };
        packet[4..6].copy_from_slice(&self.ident.to_be_bytes());
        packet[6..8].copy_from_slice(&seq.to_be_bytes());
        packet[8..16].copy_from_slice(&self.token);
        // The kernel checksums ICMPv6 and ping sockets itself; raw ICMPv4 is ours to do.
        if !self.v6 && self.raw {
            let sum = checksum(&packet);
            packet[2..4].copy_from_slice(&sum.to_be_bytes());
        }
        packet
    }

    /// Reads one datagram and wakes the ping it answers, if any.
    fn receive_one(&self, socket: &Socket) -> io::Result<()> {
        let mut buf = [MaybeUninit::<u8>::uninit(); 1500];
        let (len, from) = socket.recv_from(&mut buf)?;
        // SAFETY: recv_from initialised the first `len` bytes.
        let data: &[u8] = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast(), len) };
        let Some(from) = from.as_socket().map(|a| a.ip()) else {
            return Ok(());
        };
        let icmp = if self.raw && !self.v6 {
            // Raw IPv4 sockets deliver the IP header too.
            let header_len = usize::from(data.first().copied().unwrap_or(0) & 0x0f) * 4;
            data.get(header_len..).unwrap_or(&[])
        } else {
            data
        };
        if let Some(seq) = self.parse_reply(icmp) {
            let waiter = self
                .waiters
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&(from, seq));
            if let Some(tx) = waiter {
                let _ = tx.send(());
            }
        }
        Ok(())
    }

    /// The sequence number of one of our echo replies.
    fn parse_reply(&self, icmp: &[u8]) -> Option<u16> {
        if icmp.len() < HEADER_BYTES + self.token.len() {
            return None;
        }
        let reply = if self.v6 {
            ECHO_REPLY_V6
        } else {
            ECHO_REPLY_V4
        };
        if icmp[0] != reply || icmp[1] != 0 {
            return None;
        }
        // Ping sockets rewrite the identifier; the kernel already filtered by it.
        if self.raw && icmp[4..6] != self.ident.to_be_bytes() {
            return None;
        }
        if icmp[8..16] != self.token {
            return None;
        }
        Some(u16::from_be_bytes([icmp[6], icmp[7]]))
    }
}

struct WaiterGuard<'a> {
    socket: &'a IcmpSocket,
    key: (IpAddr, u16),
}

impl Drop for WaiterGuard<'_> {
    fn drop(&mut self) {
        self.socket
            .waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.key);
    }
}

/// The Internet checksum (RFC 1071).
fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|pair| u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)])))
        .sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_of_a_known_echo_request() {
        // type 8, code 0, id 0x1234, seq 1, no data: sum = 0x0800 + 0x1234 + 0x0001.
        let packet = [8, 0, 0, 0, 0x12, 0x34, 0, 1];
        assert_eq!(checksum(&packet), !(0x0800u16 + 0x1234 + 0x0001));
        // A packet with its checksum filled in sums to zero.
        let mut packet = packet;
        let sum = checksum(&packet);
        packet[2..4].copy_from_slice(&sum.to_be_bytes());
        assert_eq!(checksum(&packet), 0);
    }

    #[test]
    fn odd_length_is_padded() {
        assert_eq!(checksum(&[0xff]), !0xff00);
    }
}
