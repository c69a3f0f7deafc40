//! A blocking generic-netlink socket speaking the IPVS family: resolves the family (loading
//! `ip_vs` once if it is missing, as ipvsadm does), sends one request at a time and collects
//! its acknowledgement or its dump. Errors carry the kernel's errno and ipvsadm's words for it.

use std::io;

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NetlinkBuffer, NetlinkHeader, NetlinkMessage,
    NetlinkPayload,
};
use netlink_packet_generic::{
    GenlMessage,
    ctrl::{GenlCtrl, GenlCtrlCmd, nlas::GenlCtrlAttrs},
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_GENERIC};

use super::message::{IpvsMessage, cmd};

/// Why an IPVS request failed.
#[derive(Debug, thiserror::Error)]
pub enum IpvsError {
    /// The kernel has no IPVS family: `ip_vs` is neither built in nor loadable.
    #[error(
        "this kernel has no IPVS: the ip_vs module is not loaded and `modprobe ip_vs` {modprobe}"
    )]
    NoModule { modprobe: String },
    /// The kernel refused a request; `errno` is its error.
    #[error("{what}: {message}")]
    Refused {
        what: String,
        errno: i32,
        message: String,
    },
    #[error("IPVS netlink socket: {0}")]
    Io(#[from] io::Error),
    #[error("IPVS netlink: unreadable reply: {0}")]
    Decode(String),
}

impl IpvsError {
    /// The kernel's errno, for a refused request.
    pub fn errno(&self) -> Option<i32> {
        match self {
            IpvsError::Refused { errno, .. } => Some(*errno),
            _ => None,
        }
    }
}

/// ipvsadm's `ipvs_strerror`: its words for what the kernel answers to `cmd`.
fn strerror(cmd: u8, errno: i32) -> String {
    let specific = match (cmd, errno) {
        (cmd::NEW_SERVICE, libc::EEXIST) => Some("Service already exists"),
        (cmd::NEW_SERVICE, libc::ENOENT) => Some("Scheduler or persistence engine not found"),
        (cmd::SET_SERVICE, libc::ENOENT) => Some("Scheduler or persistence engine not found"),
        (cmd::SET_SERVICE | cmd::DEL_SERVICE, libc::ESRCH) => Some("No such service"),
        (cmd::NEW_DEST, libc::ESRCH) => Some("Service not defined"),
        (cmd::NEW_DEST, libc::EEXIST) => Some("Destination already exists"),
        (cmd::SET_DEST | cmd::DEL_DEST, libc::ENOENT) => Some("No such destination"),
        (cmd::NEW_DEST | cmd::SET_DEST, libc::ERANGE) => {
            Some("Weight or thresholds out of range (a lower threshold above the upper one)")
        }
        (_, libc::EPERM) => Some("Permission denied (you must be root)"),
        (_, libc::EINVAL) => {
            Some("Invalid operation.  Possibly wrong module version, address not unicast, ...")
        }
        (_, libc::ENOPROTOOPT) => Some("Protocol not available"),
        (_, libc::EAFNOSUPPORT) => Some("Operation not supported with specified address family"),
        (_, libc::EMSGSIZE) => Some("Module is wrong version"),
        _ => None,
    };
    let os = io::Error::from_raw_os_error(errno);
    match specific {
        Some(words) => format!("{words} ({os})"),
        None => os.to_string(),
    }
}

/// An IPVS generic-netlink socket.
pub struct IpvsSocket {
    socket: Socket,
    family: u16,
    sequence: u32,
}

impl IpvsSocket {
    /// Opens a socket and resolves the IPVS family; when the kernel has none, runs
    /// `modprobe ip_vs` once and tries again.
    pub fn open() -> Result<IpvsSocket, IpvsError> {
        let mut socket = IpvsSocket {
            socket: generic_socket()?,
            family: 0,
            sequence: 0,
        };
        socket.family = match socket.resolve()? {
            Some(family) => family,
            None => {
                let modprobe = match std::process::Command::new("modprobe").arg("ip_vs").output() {
                    Ok(out) if out.status.success() => {
                        "succeeded, yet the family is missing".into()
                    }
                    Ok(out) => format!(
                        "failed: {}",
                        String::from_utf8_lossy(&out.stderr)
                            .trim()
                            .lines()
                            .next()
                            .unwrap_or("")
                    ),
                    Err(e) => format!("could not run: {e}"),
                };
                // The first request after loading can fail: resolve on a fresh socket.
                socket.socket = generic_socket()?;
                socket.resolve()?.ok_or(IpvsError::NoModule { modprobe })?
            }
        };
        Ok(socket)
    }

    /// A socket on the IPVS family if the kernel has it now; `None` if not (nothing is loaded).
    pub fn open_existing() -> Result<Option<IpvsSocket>, IpvsError> {
        let mut socket = IpvsSocket {
            socket: generic_socket()?,
            family: 0,
            sequence: 0,
        };
        Ok(socket.resolve()?.map(|family| {
            socket.family = family;
            socket
        }))
    }

    /// The IPVS family's id from nlctrl; `None` when the kernel has no such family.
    fn resolve(&mut self) -> Result<Option<u16>, IpvsError> {
        let mut message = GenlMessage::from_payload(GenlCtrl {
            cmd: GenlCtrlCmd::GetFamily,
            nlas: vec![GenlCtrlAttrs::FamilyName("IPVS".to_owned())],
        });
        message.finalize();
        let replies = match self.exchange(message, false) {
            Ok(replies) => replies,
            Err(e) if e.errno() == Some(libc::ENOENT) => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(replies.iter().find_map(|reply: &GenlMessage<GenlCtrl>| {
            reply.payload.nlas.iter().find_map(|a| match a {
                GenlCtrlAttrs::FamilyId(id) => Some(*id),
                _ => None,
            })
        }))
    }

    /// Sends a command and waits for the kernel's acknowledgement. `what` names it in errors.
    pub fn command(&mut self, message: IpvsMessage, what: &str) -> Result<(), IpvsError> {
        let cmd = message.cmd();
        let mut message = GenlMessage::from_payload(message);
        message.set_resolved_family_id(self.family);
        self.exchange::<IpvsMessage>(message, false)
            .map(drop)
            .map_err(|e| named(e, cmd, what))
    }

    /// Sends a dump request and collects every reply.
    pub fn dump(
        &mut self,
        message: IpvsMessage,
        what: &str,
    ) -> Result<Vec<IpvsMessage>, IpvsError> {
        let cmd = message.cmd();
        let mut message = GenlMessage::from_payload(message);
        message.set_resolved_family_id(self.family);
        let replies = self
            .exchange::<IpvsMessage>(message, true)
            .map_err(|e| named(e, cmd, what))?;
        Ok(replies.into_iter().map(|r| r.payload).collect())
    }

    /// Sends a plain request (not a dump) whose answer is one message.
    pub fn get(
        &mut self,
        message: IpvsMessage,
        what: &str,
    ) -> Result<Option<IpvsMessage>, IpvsError> {
        let cmd = message.cmd();
        let mut message = GenlMessage::from_payload(message);
        message.set_resolved_family_id(self.family);
        let replies = self
            .exchange::<IpvsMessage>(message, false)
            .map_err(|e| named(e, cmd, what))?;
        Ok(replies.into_iter().next().map(|r| r.payload))
    }

    /// One request and everything it brings back: for a dump, the messages until DONE; for a
    /// request, its answer (if any) and the acknowledgement.
    fn exchange<R>(
        &mut self,
        request: GenlMessage<
            impl netlink_packet_generic::GenlFamily + netlink_packet_core::Emitable + std::fmt::Debug,
        >,
        dump: bool,
    ) -> Result<Vec<GenlMessage<R>>, IpvsError>
    where
        R: netlink_packet_core::ParseableParametrized<[u8], netlink_packet_generic::GenlHeader>
            + std::fmt::Debug,
    {
        self.sequence = self.sequence.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | if dump { NLM_F_DUMP } else { NLM_F_ACK };
        header.sequence_number = self.sequence;
        let mut request = NetlinkMessage::new(header, NetlinkPayload::from(request));
        request.finalize();
        let mut buffer = vec![0; request.header.length as usize];
        request.serialize(&mut buffer);
        self.socket.send(&buffer, 0)?;

        let mut replies = Vec::new();
        loop {
            let (datagram, _) = self.socket.recv_from_full()?;
            let mut offset = 0;
            while offset < datagram.len() {
                let bytes = &datagram[offset..];
                let length = NetlinkBuffer::new_checked(bytes)
                    .map_err(|e| IpvsError::Decode(e.to_string()))?
                    .length() as usize;
                if length == 0 {
                    break;
                }
                let reply: NetlinkMessage<GenlMessage<R>> =
                    NetlinkMessage::deserialize(&bytes[..length.min(bytes.len())])
                        .map_err(|e| IpvsError::Decode(e.to_string()))?;
                offset += (length + 3) & !3;
                if reply.header.sequence_number != self.sequence {
                    continue;
                }
                match reply.payload {
                    NetlinkPayload::Done(_) => return Ok(replies),
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            Some(code) => Err(IpvsError::Refused {
                                what: String::new(),
                                errno: -code.get(),
                                message: String::new(),
                            }),
                            None => Ok(replies),
                        };
                    }
                    NetlinkPayload::InnerMessage(inner) => replies.push(inner),
                    _ => {}
                }
            }
        }
    }
}

fn generic_socket() -> Result<Socket, IpvsError> {
    let mut socket = Socket::new(NETLINK_GENERIC)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    Ok(socket)
}

/// Gives a refusal its words: what was asked and what ipvsadm would say.
fn named(e: IpvsError, cmd: u8, what: &str) -> IpvsError {
    match e {
        IpvsError::Refused { errno, .. } => IpvsError::Refused {
            what: what.to_string(),
            errno,
            message: strerror(cmd, errno),
        },
        other => other,
    }
}
