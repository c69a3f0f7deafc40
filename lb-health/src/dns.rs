//! The `dns` negotiate check: ask the real, as a name server, for `request`.
//!
//! As ldirectord's Net::DNS `search`: an A query for a name, a PTR query for an IP address
//! (`in-addr.arpa` / `ip6.arpa`), recursion desired, over UDP (TCP when the virtual's protocol
//! is tcp, or when the UDP answer comes back truncated). Up iff an A address or a PTR name in
//! the answer section matches `receive`. An empty `receive` is always down, as in ldirectord
//! (it tests `length($recstr)` before matching).
//!
//! Difference: the name is asked as written. Net::DNS's `search` would first append the
//! resolv.conf search domains to a name without dots.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use simple_dns::rdata::RData;
use simple_dns::{CLASS, Name, Packet, PacketFlag, QCLASS, QTYPE, Question, RCODE, TYPE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::outcome::Outcome;
use crate::receive::Receive;
use crate::udp::{self, Retransmit};

/// UDP queries are resent this often until the caller's deadline, as a resolver retries.
const RETRANSMIT: Duration = Duration::from_secs(1);

/// What to ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Query {
    pub(crate) name: String,
    pub(crate) qtype: QueryType,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QueryType {
    A,
    Ptr,
}

impl Query {
    /// The question for `request` (ldirectord strips one leading `/`).
    pub(crate) fn for_request(request: &str) -> Query {
        let request = request.strip_prefix('/').unwrap_or(request);
        match request.parse::<IpAddr>() {
            Ok(ip) => Query {
                name: reverse_name(ip),
                qtype: QueryType::Ptr,
            },
            Err(_) => Query {
                name: request.trim_end_matches('.').to_owned(),
                qtype: QueryType::A,
            },
        }
    }

    fn encode(&self, id: u16) -> Result<Vec<u8>, String> {
        let mut packet = Packet::new_query(id);
        packet.set_flags(PacketFlag::RECURSION_DESIRED);
        let qtype = match self.qtype {
            QueryType::A => QTYPE::TYPE(TYPE::A),
            QueryType::Ptr => QTYPE::TYPE(TYPE::PTR),
        };
        let name = Name::new(&self.name).map_err(|e| format!("bad name {:?}: {e}", self.name))?;
        packet
            .questions
            .push(Question::new(name, qtype, QCLASS::CLASS(CLASS::IN), false));
        packet.build_bytes_vec().map_err(|e| e.to_string())
    }
}

/// The reverse-lookup name of an address.
pub(crate) fn reverse_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            format!("{d}.{c}.{b}.{a}.in-addr.arpa")
        }
        IpAddr::V6(v6) => {
            let mut name = String::with_capacity(72);
            for byte in v6.octets().iter().rev() {
                name.push_str(&format!("{:x}.{:x}.", byte & 0xf, byte >> 4));
            }
            name.push_str("ip6.arpa");
            name
        }
    }
}

/// Runs the check against `server`; the caller bounds it with `negotiatetimeout`.
pub(crate) async fn check(
    server: SocketAddr,
    query: &Query,
    receive: &Receive,
    receive_is_empty: bool,
    use_tcp: bool,
) -> Outcome {
    if receive_is_empty {
        return Outcome::down("receive is empty: ldirectord's dns check is never up without one");
    }
    let id = fastrand::u16(..);
    let request = match query.encode(id) {
        Ok(bytes) => bytes,
        Err(e) => return Outcome::down(e),
    };
    let response = if use_tcp {
        ask_tcp(server, &request).await
    } else {
        match ask_udp(server, &request, id).await {
            Ok(bytes) if truncated(&bytes) => ask_tcp(server, &request).await,
            other => other,
        }
    };
    match response {
        Ok(bytes) => judge(&bytes, id, receive),
        Err(e) => Outcome::down(e),
    }
}

fn truncated(response: &[u8]) -> bool {
    Packet::parse(response).is_ok_and(|p| p.has_flags(PacketFlag::TRUNCATION))
}

async fn ask_udp(server: SocketAddr, request: &[u8], id: u16) -> Result<Vec<u8>, String> {
    let socket = udp::connected(server).await?;
    // Stray datagrams are ignored; only our id answers the question.
    udp::ask(&socket, request, Retransmit::every(RETRANSMIT), |answer| {
        answer.len() >= 2 && u16::from_be_bytes([answer[0], answer[1]]) == id
    })
    .await
}

async fn ask_tcp(server: SocketAddr, request: &[u8]) -> Result<Vec<u8>, String> {
    let mut stream = TcpStream::connect(server)
        .await
        .map_err(|e| format!("connect {server}: {e}"))?;
    let len = u16::try_from(request.len()).map_err(|_| "query too long".to_owned())?;
    let mut framed = Vec::with_capacity(request.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(request);
    stream
        .write_all(&framed)
        .await
        .map_err(|e| format!("send: {e}"))?;
    let len = stream.read_u16().await.map_err(|e| format!("read: {e}"))?;
    let mut response = vec![0u8; usize::from(len)];
    stream
        .read_exact(&mut response)
        .await
        .map_err(|e| format!("read: {e}"))?;
    Ok(response)
}

/// Up iff an A address or PTR name in the answer matches `receive`.
fn judge(response: &[u8], id: u16, receive: &Receive) -> Outcome {
    let packet = match Packet::parse(response) {
        Ok(p) => p,
        Err(e) => return Outcome::bad_answer(format!("bad response: {e}")),
    };
    if packet.id() != id {
        return Outcome::bad_answer("response id does not match the query");
    }
    if packet.rcode() != RCODE::NoError {
        return Outcome::bad_answer(format!("no answer ({:?})", packet.rcode()));
    }
    for answer in &packet.answers {
        let text = match &answer.rdata {
            RData::A(a) => Ipv4Addr::from(a.address).to_string(),
            RData::PTR(ptr) => ptr.0.to_string(),
            _ => continue,
        };
        if receive.is_match(&text) {
            return Outcome::up(format!("answer {text} matched"));
        }
    }
    if packet.answers.is_empty() {
        Outcome::bad_answer("no answer")
    } else {
        Outcome::bad_answer("response mismatch")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_a_queries_and_addresses_ptr() {
        assert_eq!(
            Query::for_request("/www.example.com."),
            Query {
                name: "www.example.com".into(),
                qtype: QueryType::A
            }
        );
        assert_eq!(
            Query::for_request("/192.0.2.10"),
            Query {
                name: "10.2.0.192.in-addr.arpa".into(),
                qtype: QueryType::Ptr
            }
        );
    }

    #[test]
    fn ipv6_reverse_name_is_nibbles() {
        let name = reverse_name("2001:db8::1".parse().unwrap());
        assert!(name.starts_with("1.0.0.0.0.0.0.0."));
        assert!(name.ends_with(".8.b.d.0.1.0.0.2.ip6.arpa"));
        assert_eq!(name.split('.').count(), 34);
    }

    #[test]
    fn query_encodes_with_rd() {
        let bytes = Query::for_request("/example.com").encode(7).unwrap();
        let p = Packet::parse(&bytes).unwrap();
        assert_eq!(p.id(), 7);
        assert!(p.has_flags(PacketFlag::RECURSION_DESIRED));
        assert_eq!(p.questions.len(), 1);
    }
}
