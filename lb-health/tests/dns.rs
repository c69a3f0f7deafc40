//! The dns check against a small real name server on loopback (UDP and TCP), answering A
//! and PTR queries.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use common::{Settings, check_once, negotiate};
use lb_health::{Protocol, Service};
use simple_dns::rdata::{A, PTR, RData};
use simple_dns::{CLASS, Name, Packet, PacketFlag, QTYPE, RCODE, ResourceRecord, TYPE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};

/// Answers `www.example.test` A 192.0.2.80 and `80.2.0.192.in-addr.arpa` PTR
/// `www.example.test`; NXDOMAIN otherwise.
fn answer(query: &[u8]) -> Vec<u8> {
    let query = Packet::parse(query).unwrap();
    let mut reply = Packet::new_reply(query.id());
    reply.set_flags(PacketFlag::RECURSION_AVAILABLE);
    let question = query.questions[0].clone();
    let name = question.qname.to_string();
    let record = match (name.as_str(), question.qtype) {
        ("www.example.test", QTYPE::TYPE(TYPE::A)) => {
            Some(RData::A(A::from(Ipv4Addr::new(192, 0, 2, 80))))
        }
        ("80.2.0.192.in-addr.arpa", QTYPE::TYPE(TYPE::PTR)) => {
            Some(RData::PTR(PTR(Name::new_unchecked("www.example.test"))))
        }
        _ => None,
    };
    match record {
        Some(rdata) => reply.answers.push(ResourceRecord::new(
            question.qname.clone(),
            CLASS::IN,
            60,
            rdata,
        )),
        None => *reply.rcode_mut() = RCODE::NameError,
    }
    reply.questions.push(question);
    reply.build_bytes_vec().unwrap()
}

/// A name server on one port for UDP and TCP.
async fn name_server() -> SocketAddr {
    // The same port for both: take a free UDP port, retry if its TCP twin is taken.
    let (udp, tcp, addr) = loop {
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = udp.local_addr().unwrap();
        if let Ok(tcp) = TcpListener::bind(addr).await {
            break (udp, tcp, addr);
        }
    };
    tokio::spawn(async move {
        let mut buf = [0u8; 512];
        while let Ok((n, peer)) = udp.recv_from(&mut buf).await {
            let _ = udp.send_to(&answer(&buf[..n]), peer).await;
        }
    });
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = tcp.accept().await {
            tokio::spawn(async move {
                let len = stream.read_u16().await.unwrap();
                let mut query = vec![0u8; usize::from(len)];
                stream.read_exact(&mut query).await.unwrap();
                let reply = answer(&query);
                stream.write_u16(reply.len() as u16).await.unwrap();
                stream.write_all(&reply).await.unwrap();
            });
        }
    });
    addr
}

fn dns_spec(server: SocketAddr, request: &str, receive: &str) -> lb_health::CheckSpec {
    let mut spec = negotiate(server, Service::Dns);
    spec.set_protocol(Protocol::Udp);
    *spec.request() = request.into();
    *spec.receive() = receive.into();
    spec
}

#[tokio::test]
async fn a_record_matches_receive() {
    let server = name_server().await;
    let outcome = check_once(dns_spec(server, "/www.example.test", r"^192\.0\.2\.80$")).await;
    assert!(outcome.up, "{outcome:?}");
    let outcome = check_once(dns_spec(server, "/www.example.test", "10.0.0.1")).await;
    assert!(!outcome.up);
    assert_eq!(&*outcome.reason, "response mismatch");
}

#[tokio::test]
async fn address_request_asks_ptr() {
    let server = name_server().await;
    let outcome = check_once(dns_spec(server, "/192.0.2.80", "^www\\.example\\.test$")).await;
    assert!(outcome.up, "{outcome:?}");
}

#[tokio::test]
async fn tcp_when_protocol_is_tcp() {
    let server = name_server().await;
    let mut spec = dns_spec(server, "/www.example.test", "192.0.2.80");
    spec.set_protocol(Protocol::Tcp);
    let outcome = check_once(spec).await;
    assert!(outcome.up, "{outcome:?}");
}

#[tokio::test]
async fn nxdomain_is_down() {
    let server = name_server().await;
    let outcome = check_once(dns_spec(server, "/nothing.example.test", ".")).await;
    assert!(!outcome.up);
    assert!(outcome.reason.contains("NameError"), "{outcome:?}");
}

#[tokio::test]
async fn empty_receive_is_always_down() {
    let server = name_server().await;
    let outcome = check_once(dns_spec(server, "/www.example.test", "")).await;
    assert!(!outcome.up);
}

#[tokio::test]
async fn silent_server_fails_at_the_deadline() {
    let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut spec = dns_spec(silent.local_addr().unwrap(), "/www.example.test", ".");
    spec.negotiate_timeout = Duration::from_millis(500);
    let outcome = check_once(spec).await;
    assert!(!outcome.up);
    assert!(outcome.reason.contains("timed out"), "{outcome:?}");
}
