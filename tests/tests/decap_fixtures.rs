//! `xdp-ipip-decap` (the reals' decapsulation in the IPIP tests) on test frames through
//! BPF_PROG_TEST_RUN: what it strips, and what it leaves untouched.

use aya::programs::Xdp;
use aya::{Ebpf, TestRun as _, TestRunOptions};

const XDP_PASS: u32 = 2;
const ETH: [u8; 14] = [2, 0, 0, 0, 0, 0xb, 2, 0, 0, 0, 0, 2, 0x08, 0x00];
const ETH6: [u8; 14] = [2, 0, 0, 0, 0, 0xb, 2, 0, 0, 0, 0, 2, 0x86, 0xdd];

fn load() -> Option<Ebpf> {
    if !xtask::lab::is_root() {
        eprintln!("skipped: BPF_PROG_TEST_RUN needs root");
        return None;
    }
    let object = xtask::lab::xdp_ipip_decap_object().expect("the xdp-ipip-decap object");
    let mut ebpf = Ebpf::load_file(&object).expect("load xdp-ipip-decap");
    let program: &mut Xdp = ebpf
        .program_mut("xdp_ipip_decap")
        .expect("the program")
        .try_into()
        .expect("an XDP program");
    program.load().expect("verified");
    Some(ebpf)
}

/// The verdict and the frame after the program.
fn run(ebpf: &Ebpf, frame: &[u8]) -> (u32, Vec<u8>) {
    let program: &Xdp = ebpf
        .program("xdp_ipip_decap")
        .expect("the program")
        .try_into()
        .expect("an XDP program");
    let mut out = vec![0u8; frame.len() + 256];
    let result = program
        .test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ..TestRunOptions::default()
        })
        .expect("BPF_PROG_TEST_RUN");
    out.truncate(result.data_size_out as usize);
    (result.return_value, out)
}

/// An IPv4 header (no checksum: the program does not read it) with `options` bytes of options.
fn ipv4(proto: u8, frag: u16, options: usize, payload: &[u8]) -> Vec<u8> {
    let len = 20 + options + payload.len();
    let mut ip = vec![0x45 + (options / 4) as u8, 0];
    ip.extend_from_slice(&(len as u16).to_be_bytes());
    ip.extend_from_slice(&[0x12, 0x34]);
    ip.extend_from_slice(&frag.to_be_bytes());
    ip.extend_from_slice(&[64, proto, 0, 0, 10, 240, 0, 2, 10, 241, 0, 11]);
    ip.extend(std::iter::repeat_n(1u8, options)); // NOPs
    ip.extend_from_slice(payload);
    ip
}

fn ipv6(next: u8, payload: &[u8]) -> Vec<u8> {
    let mut ip = vec![0x60, 0, 0, 0];
    ip.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    ip.extend_from_slice(&[next, 64]);
    ip.extend_from_slice(&[0xfd, 0, 0x02, 0x40, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    ip.extend_from_slice(&[0xfd, 0, 0x02, 0x41, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x11]);
    ip.extend_from_slice(payload);
    ip
}

fn frame(eth: [u8; 14], ip: &[u8]) -> Vec<u8> {
    let mut f = eth.to_vec();
    f.extend_from_slice(ip);
    f
}

/// A UDP packet as a client sends it to a VIP: what travels inside the tunnel.
fn inner4() -> Vec<u8> {
    ipv4(17, 0x4000, 0, b"\x30\x39\x13\x88\x00\x0d\x00\x00hello")
}

fn inner6() -> Vec<u8> {
    ipv6(17, b"\x30\x39\x13\x88\x00\x0d\x00\x00hello")
}

#[test]
fn strips_the_outer_header_of_ipv4_in_ipv4_and_ipv6_in_ipv6() {
    let Some(ebpf) = load() else { return };
    let cases = [
        (
            "IPv4 in IPv4",
            frame(ETH, &ipv4(4, 0x4000, 0, &inner4())),
            frame(ETH, &inner4()),
        ),
        (
            "IPv4 in IPv4, outer options",
            frame(ETH, &ipv4(4, 0, 8, &inner4())),
            frame(ETH, &inner4()),
        ),
        (
            "IPv6 in IPv6",
            frame(ETH6, &ipv6(41, &inner6())),
            frame(ETH6, &inner6()),
        ),
    ];
    for (what, tunnelled, inner) in cases {
        assert_eq!(run(&ebpf, &tunnelled), (XDP_PASS, inner), "{what}");
    }
}

#[test]
fn leaves_everything_else_untouched() {
    let Some(ebpf) = load() else { return };
    let cases = [
        ("plain IPv4", frame(ETH, &inner4())),
        ("plain IPv6", frame(ETH6, &inner6())),
        // Reassembly first, which only the stack can do.
        (
            "an outer first fragment",
            frame(ETH, &ipv4(4, 0x2000, 0, &inner4())),
        ),
        (
            "an outer later fragment",
            frame(ETH, &ipv4(4, 0x0010, 0, &inner4())),
        ),
        (
            "protocol 4 carrying IPv6",
            frame(ETH, &ipv4(4, 0, 0, &inner6())),
        ),
        ("IPv4 in IPv6", frame(ETH6, &ipv6(4, &inner4()))),
        (
            "next header 41 carrying IPv4",
            frame(ETH6, &ipv6(41, &inner4())),
        ),
        (
            "IPv6 in IPv4 (protocol 41)",
            frame(ETH, &ipv4(41, 0, 0, &inner6())),
        ),
        (
            "protocol 4, nothing inside",
            frame(ETH, &ipv4(4, 0, 0, &[])),
        ),
        (
            "an IPv4 ethertype with IPv6 in it",
            frame(ETH, &ipv6(41, &inner6())),
        ),
        ("an ARP frame", {
            let mut f = ETH.to_vec();
            f[12..14].copy_from_slice(&[0x08, 0x06]);
            f.extend_from_slice(&[0; 28]);
            f
        }),
    ];
    for (what, untouched) in cases {
        assert_eq!(
            run(&ebpf, &untouched),
            (XDP_PASS, untouched.clone()),
            "{what}"
        );
    }
}
