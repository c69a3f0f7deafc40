//! The real servers: Debian's daemons, each started with a private configuration and data
//! in a temporary directory, on loopback ports picked free, stopped when dropped ([`Server`]).
//! Also a TNS listener that answers as Oracle's does, since no Oracle server is free to run.

use std::net::{IpAddr, SocketAddr};
use std::os::unix::process::CommandExt as _;
use std::process::Command;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::{Certificates, Server, V4, V6, certificates, chown, free_port, ids, run};

pub const WELCOME: &str = "Welcome to the xdirectord test server\n";

/// vsftpd on `ip:port`, serving `root` to anonymous users.
pub fn vsftpd(ip: IpAddr, port: u16) -> Server {
    let dir = Server::dir("vsftpd");
    let root = dir.path().join("ftp");
    std::fs::create_dir(&root).unwrap();
    std::fs::create_dir(dir.path().join("empty")).unwrap();
    std::fs::write(root.join("welcome.msg"), WELCOME).unwrap();
    // Bigger than what the check keeps: it is read to its end, the start matched.
    let mut big = b"BIG FILE START\n".to_vec();
    big.resize(3 * 1024 * 1024, b'x');
    std::fs::write(root.join("big.bin"), big).unwrap();
    let listen = match ip {
        IpAddr::V4(a) => format!("listen=YES\nlisten_ipv6=NO\nlisten_address={a}\n"),
        IpAddr::V6(a) => format!("listen=NO\nlisten_ipv6=YES\nlisten_address6={a}\n"),
    };
    let conf = dir.path().join("vsftpd.conf");
    std::fs::write(
        &conf,
        format!(
            "{listen}listen_port={port}\nbackground=NO\nanonymous_enable=YES\nlocal_enable=NO\n\
             no_anon_password=YES\nanon_root={root}\nsecure_chroot_dir={empty}\n\
             seccomp_sandbox=NO\nxferlog_enable=NO\nvsftpd_log_file={dir}/vsftpd.log\n\
             pasv_enable=YES\nconnect_from_port_20=NO\nwrite_enable=NO\nftp_username=ftp\n\
             max_clients=0\nmax_per_ip=0\n",
            root = root.display(),
            empty = dir.path().join("empty").display(),
            dir = dir.path().display(),
        ),
    )
    .unwrap();
    let mut server = Server::start("vsftpd", dir, Command::new("/usr/sbin/vsftpd").arg(&conf));
    server.wait_tcp(SocketAddr::new(ip, port));
    server
}

/// exim on three ports of 127.0.0.1 and ::1: `normal`; `no_ehlo`, which refuses EHLO (so
/// the client falls back to HELO); `refused`, which greets with 554.
pub struct Exim {
    pub server: Server,
    pub normal: u16,
    pub no_ehlo: u16,
    pub refused: u16,
}

pub fn exim() -> Exim {
    let (normal, no_ehlo, refused) = (free_port(), free_port(), free_port());
    let dir = Server::dir("exim");
    for sub in ["spool", "log"] {
        std::fs::create_dir(dir.path().join(sub)).unwrap();
        chown(&dir.path().join(sub), "Debian-exim");
    }
    let conf = dir.path().join("exim.conf");
    // exim accepts -C from root only for a file owned by root and written by no one else.
    std::fs::write(
        &conf,
        format!(
            "primary_hostname = xdirectord.test\n\
             spool_directory = {dir}/spool\n\
             log_file_path = {dir}/log/%slog\n\
             pid_file_path = {dir}/exim.pid\n\
             local_interfaces = <; 127.0.0.1 ; ::1\n\
             daemon_smtp_ports = {normal} : {no_ehlo} : {refused}\n\
             acl_smtp_connect = acl_connect\n\
             smtp_accept_max = 0\n\
             acl_smtp_helo = acl_helo\n\
             begin acl\n\
             acl_connect:\n  deny condition = ${{if eq{{$received_port}}{{{refused}}}}}\n  accept\n\
             acl_helo:\n  deny condition = ${{if and{{{{eq{{$received_port}}{{{no_ehlo}}}}}\
             {{match{{$smtp_command}}{{\\N^(?i)ehlo\\N}}}}}}}}\n  accept\n\
             begin routers\nbegin transports\n",
            dir = dir.path().display()
        ),
    )
    .unwrap();
    let mut server = Server::start(
        "exim",
        dir,
        Command::new("/usr/sbin/exim4")
            .args(["-bdf", "-C"])
            .arg(&conf),
    );
    for port in [normal, no_ehlo, refused] {
        server.wait_tcp(SocketAddr::new(V4, port));
        server.wait_tcp(SocketAddr::new(V6, port));
    }
    Exim {
        server,
        normal,
        no_ehlo,
        refused,
    }
}

/// dovecot on 127.0.0.1 and ::1: imap, imaps, pop3 and pop3s. Users `probe` (one message in
/// its mailbox) and `empty` (none), password `s3cret`. Its certificate names 127.0.0.1 and
/// localhost (not ::1) and is signed by `certs.ca_der`.
pub struct Dovecot {
    pub server: Server,
    pub imap: u16,
    pub imaps: u16,
    pub pop3: u16,
    pub pop3s: u16,
    pub certs: Certificates,
}

pub fn dovecot() -> Dovecot {
    let (imap, imaps, pop3, pop3s) = (free_port(), free_port(), free_port(), free_port());
    let dir = Server::dir("dovecot");
    let d = dir.path();
    let certs = certificates(&["127.0.0.1", "localhost"]);
    std::fs::write(d.join("cert.pem"), &certs.cert_pem).unwrap();
    std::fs::write(d.join("key.pem"), &certs.key_pem).unwrap();
    std::fs::write(
        d.join("users"),
        "probe:{PLAIN}s3cret\nempty:{PLAIN}s3cret\n",
    )
    .unwrap();
    let new = d.join("home/probe/Maildir/new");
    std::fs::create_dir_all(&new).unwrap();
    for sub in ["cur", "tmp"] {
        std::fs::create_dir_all(d.join("home/probe/Maildir").join(sub)).unwrap();
    }
    std::fs::write(
        new.join("1.xdt"),
        "From: a@xdirectord.test\r\nSubject: hello\r\n\r\nbody\r\n",
    )
    .unwrap();
    std::fs::create_dir_all(d.join("home/empty")).unwrap();
    chown(&d.join("home"), "nobody");
    let conf = d.join("dovecot.conf");
    std::fs::write(
        &conf,
        format!(
            "base_dir = {d}/run\nstate_dir = {d}/state\ninstance_name = xdt-{imap}\n\
             log_path = {d}/dovecot.log\nprotocols = imap pop3\nlisten = 127.0.0.1, ::1\n\
             ssl = yes\nssl_cert = <{d}/cert.pem\nssl_key = <{d}/key.pem\n\
             disable_plaintext_auth = no\nauth_mechanisms = plain login cram-md5\n\
             auth_failure_delay = 0\nlogin_trusted_networks = 127.0.0.0/8 ::1/128\n\
             mail_max_userip_connections = 10000\ndefault_client_limit = 4000\n\
             default_login_user = dovenull\ndefault_internal_user = dovecot\n\
             passdb {{\n  driver = passwd-file\n  args = scheme=PLAIN {d}/users\n}}\n\
             userdb {{\n  driver = static\n  args = uid=nobody gid=nogroup home={d}/home/%u\n}}\n\
             mail_location = maildir:~/Maildir\n\
             service imap-login {{\n  inet_listener imap {{\n    port = {imap}\n  }}\n\
               inet_listener imaps {{\n    port = {imaps}\n    ssl = yes\n  }}\n}}\n\
             service pop3-login {{\n  inet_listener pop3 {{\n    port = {pop3}\n  }}\n\
               inet_listener pop3s {{\n    port = {pop3s}\n    ssl = yes\n  }}\n}}\n",
            d = d.display()
        ),
    )
    .unwrap();
    let mut server = Server::start(
        "dovecot",
        dir,
        Command::new("/usr/sbin/dovecot")
            .arg("-F")
            .arg("-c")
            .arg(&conf),
    );
    for port in [imap, imaps, pop3, pop3s] {
        server.wait_tcp(SocketAddr::new(V4, port));
        server.wait_tcp(SocketAddr::new(V6, port));
    }
    Dovecot {
        server,
        imap,
        imaps,
        pop3,
        pop3s,
        certs,
    }
}

const SLAPD_CONF: &str = "include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile DIR/slapd.pid
TLSCertificateFile DIR/cert.pem
TLSCertificateKeyFile DIR/key.pem
database mdb
maxsize 10485760
suffix \"dc=example,dc=com\"
rootdn \"cn=admin,dc=example,dc=com\"
rootpw secret
directory DIR/db
";

const DATA: &str = "dn: dc=example,dc=com
objectClass: dcObject
objectClass: organization
o: Example
dc: example

dn: uid=probe,dc=example,dc=com
objectClass: inetOrgPerson
uid: probe
cn: Probe
sn: Probe
userPassword: s3cret
";

/// slapd on 127.0.0.1 and ::1: ldap on `.1`, ldaps (a certificate no store trusts) on `.2`.
pub fn slapd() -> (Server, u16, u16) {
    let (ldap, ldaps) = (free_port(), free_port());
    let dir = Server::dir("slapd");
    let d = dir.path().display().to_string();
    std::fs::create_dir(dir.path().join("db")).unwrap();
    let certs = certificates(&["ldap.invalid"]);
    std::fs::write(dir.path().join("cert.pem"), &certs.cert_pem).unwrap();
    std::fs::write(dir.path().join("key.pem"), &certs.key_pem).unwrap();
    let conf = dir.path().join("slapd.conf");
    std::fs::write(&conf, SLAPD_CONF.replace("DIR", &d)).unwrap();
    std::fs::write(dir.path().join("data.ldif"), DATA).unwrap();
    run(Command::new("/usr/sbin/slapadd")
        .arg("-f")
        .arg(&conf)
        .arg("-l")
        .arg(dir.path().join("data.ldif")));
    let urls = format!(
        "ldap://127.0.0.1:{ldap}/ ldap://[::1]:{ldap}/ ldaps://127.0.0.1:{ldaps}/ ldaps://[::1]:{ldaps}/"
    );
    let mut server = Server::start(
        "slapd",
        dir,
        Command::new("/usr/sbin/slapd")
            .args(["-d", "0", "-h", &urls, "-f"])
            .arg(&conf),
    );
    for port in [ldap, ldaps] {
        server.wait_tcp(SocketAddr::new(V4, port));
        server.wait_tcp(SocketAddr::new(V6, port));
    }
    (server, ldap, ldaps)
}

/// postgres (as the user postgres: it refuses root) on 127.0.0.1 and ::1, password
/// authentication over TCP, with the same user, database and tables.
pub fn postgres() -> (Server, u16) {
    let port = free_port();
    let dir = Server::dir("postgres");
    chown(dir.path(), "postgres");
    let data = dir.path().join("data");
    let (uid, gid) = ids("postgres");
    let bin = "/usr/lib/postgresql/15/bin";
    run(Command::new(format!("{bin}/initdb"))
        .uid(uid)
        .gid(gid)
        .arg("-D")
        .arg(&data)
        .args([
            "-U",
            "postgres",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
        ])
        .args(["-E", "UTF8", "--no-sync"]));
    let mut server = Server::start(
        "postgres",
        dir,
        Command::new(format!("{bin}/postgres"))
            .uid(uid)
            .gid(gid)
            .arg("-D")
            .arg(&data)
            .arg("-k")
            .arg(data.parent().unwrap())
            .arg("-p")
            .arg(port.to_string())
            .args(["-c", "listen_addresses=127.0.0.1,::1", "-c", "fsync=off"]),
    );
    server.wait_tcp(SocketAddr::new(V4, port));
    server.wait_tcp(SocketAddr::new(V6, port));
    let psql = |database: &str, sql: &str| {
        run(Command::new(format!("{bin}/psql"))
            .uid(uid)
            .gid(gid)
            .arg("-h")
            .arg(data.parent().unwrap())
            .args([
                "-p",
                &port.to_string(),
                "-U",
                "postgres",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
            ])
            .arg(database)
            .arg("-c")
            .arg(sql));
    };
    psql("postgres", "CREATE USER probe PASSWORD 's3cret'");
    psql("postgres", "CREATE DATABASE shop OWNER probe");
    psql(
        "shop",
        "CREATE TABLE items (id int); INSERT INTO items VALUES (1), (2); CREATE TABLE empty (id int); \
         GRANT SELECT ON items, empty TO probe",
    );
    (server, port)
}

/// kamailio's stock configuration answers an OPTIONS without a user part with
/// `200 Keepalive`, which ldirectord counts as down; this one does the same, answers
/// `486 Busy Here` for the user `busy` and `200 OK` for any other.
const KAMAILIO_CFG: &str = r#"#!KAMAILIO
debug=2
log_stderror=yes
children=1
tcp_children=1
auto_aliases=no
listen=udp:127.0.0.1:PORT
listen=tcp:127.0.0.1:PORT
listen=udp:[::1]:PORT
listen=tcp:[::1]:PORT
mpath="/usr/lib/x86_64-linux-gnu/kamailio/modules/"
loadmodule "sl.so"
loadmodule "pv.so"
request_route {
    if ($rm == "OPTIONS") {
        if ($rU == $null) {
            sl_send_reply("200", "Keepalive");
        } else if ($rU == "busy") {
            sl_send_reply("486", "Busy Here");
        } else {
            sl_send_reply("200", "OK");
        }
        exit;
    }
    sl_send_reply("405", "Method Not Allowed");
}
"#;

pub fn kamailio() -> (Server, u16) {
    let port = free_port();
    let dir = Server::dir("kamailio");
    let cfg = dir.path().join("kamailio.cfg");
    std::fs::write(&cfg, KAMAILIO_CFG.replace("PORT", &port.to_string())).unwrap();
    let pid = dir.path().join("kamailio.pid");
    let run_dir = dir.path().to_owned();
    let mut server = Server::start(
        "kamailio",
        dir,
        Command::new("/usr/sbin/kamailio")
            .arg("-f")
            .arg(&cfg)
            .args(["-DD", "-E", "-m", "32", "-M", "8", "-P"])
            .arg(&pid)
            .arg("-Y")
            .arg(&run_dir),
    );
    for ip in [V4, V6] {
        server.wait_tcp(SocketAddr::new(ip, port));
        server.wait_udp(SocketAddr::new(ip, port));
    }
    (server, port)
}

/// The shared secret of [`freeradius`]'s clients.
pub const RADIUS_SECRET: &str = "testing123";

/// freeradius on two ports: `plain` (127.0.0.1 and ::1) accepts requests without a
/// Message-Authenticator, `strict` (127.0.0.1) requires one, as FreeRADIUS does by default
/// since BlastRADIUS (3.2.5). User `probe`, password `s3cret`.
pub fn freeradius() -> (Server, u16, u16) {
    let (plain, strict) = (free_port(), free_port());
    let dir = Server::dir("freeradius");
    let d = dir.path().display().to_string();
    let client = |name: &str, address: &str, require: &str| {
        format!(
            "  client {name} {{\n    {address}\n    secret = {RADIUS_SECRET}\n    \
             require_message_authenticator = {require}\n  }}\n"
        )
    };
    let listen = |address: &str, port: u16, clients: &str| {
        format!(
            "  listen {{\n    type = auth\n    {address}\n    port = {port}\n    clients = {clients}\n  }}\n"
        )
    };
    let conf = format!(
        "prefix = /usr\nexec_prefix = /usr\nsysconfdir = /etc\nlocalstatedir = /var\n\
         sbindir = /usr/sbin\nlogdir = {d}\nraddbdir = {d}\nradacctdir = {d}\nname = freeradius\n\
         confdir = {d}\nmodconfdir = {d}\nrun_dir = {d}\ndb_dir = {d}\nlibdir = /usr/lib/freeradius\n\
         dictdir = /usr/share/freeradius\npidfile = {d}/radiusd.pid\nmax_request_time = 5\n\
         cleanup_delay = 0\nmax_requests = 1024\nhostname_lookups = no\n\
         log {{\n  destination = stderr\n}}\n\
         security {{\n  allow_core_dumps = no\n  max_attributes = 200\n  reject_delay = 0\n  status_server = no\n}}\n\
         modules {{\n  pap {{\n  }}\n  files {{\n    filename = {d}/users\n  }}\n}}\n\
         clients plain {{\n{}{}}}\nclients strict {{\n{}}}\n\
         server default {{\n{}{}{}  authorize {{\n    files\n    pap\n  }}\n  authenticate {{\n    pap\n  }}\n}}\n",
        client("v4", "ipaddr = 127.0.0.1", "no"),
        client("v6", "ipv6addr = ::1", "no"),
        client("v4", "ipaddr = 127.0.0.1", "yes"),
        listen("ipaddr = 127.0.0.1", plain, "plain"),
        listen("ipv6addr = ::1", plain, "plain"),
        listen("ipaddr = 127.0.0.1", strict, "strict"),
    );
    std::fs::write(dir.path().join("radiusd.conf"), conf).unwrap();
    std::fs::write(dir.path().join("dictionary"), "").unwrap();
    std::fs::write(
        dir.path().join("users"),
        "probe Cleartext-Password := \"s3cret\"\n",
    )
    .unwrap();
    let conf_dir = dir.path().to_owned();
    let mut server = Server::start(
        "freeradius",
        dir,
        Command::new("/usr/sbin/freeradius")
            .arg("-X")
            .arg("-d")
            .arg(&conf_dir),
    );
    server.wait_udp(SocketAddr::new(V4, plain));
    server.wait_udp(SocketAddr::new(V6, plain));
    server.wait_udp(SocketAddr::new(V4, strict));
    (server, plain, strict)
}

/// A TNS packet: the 8-byte header (length, checksum 0, type, reserved, header checksum 0),
/// then `body`.
fn packet(kind: u8, body: &[u8]) -> Vec<u8> {
    let length = u16::try_from(8 + body.len()).unwrap();
    let mut p = length.to_be_bytes().to_vec();
    p.extend_from_slice(&[0, 0, kind, 0, 0, 0]);
    p.extend_from_slice(body);
    p
}

/// ACCEPT: version 313, no options, SDU 2048, TDU 32767, byte order, no data (offset 32),
/// connect flags.
fn accept() -> Vec<u8> {
    packet(
        2,
        &[
            0x01, 0x39, 0x00, 0x00, 0x08, 0x00, 0x7f, 0xff, 0x01, 0x00, 0x00, 0x00, 0x00, 0x20,
            0x41, 0x01, 0, 0, 0, 0, 0, 0, 0, 0,
        ],
    )
}

/// REFUSE: user and system reason, then the listener's descriptor with its error.
fn refuse(error: u32) -> Vec<u8> {
    let text = format!(
        "(DESCRIPTION=(TMP=)(VSNNUM=318767104)(ERR={error})(ERROR_STACK=(ERROR=(CODE={error})(EMFI=4))))"
    );
    let mut body = vec![0x22, 0x00];
    body.extend_from_slice(&u16::try_from(text.len()).unwrap().to_be_bytes());
    body.extend_from_slice(text.as_bytes());
    packet(4, &body)
}

/// REDIRECT to a dispatcher.
fn redirect() -> Vec<u8> {
    let text = "(ADDRESS=(PROTOCOL=tcp)(HOST=192.0.2.50)(PORT=40123))";
    let mut body = u16::try_from(text.len()).unwrap().to_be_bytes().to_vec();
    body.extend_from_slice(text.as_bytes());
    packet(5, &body)
}

/// A TNS listener played by the test: answers each CONNECT by the SID it names, after checking its layout.
pub async fn tns_listener(ip: IpAddr) -> SocketAddr {
    let listener = TcpListener::bind((ip, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut resent = false;
                loop {
                    let mut header = [0u8; 8];
                    if stream.read_exact(&mut header).await.is_err() {
                        return;
                    }
                    let length = usize::from(u16::from_be_bytes([header[0], header[1]]));
                    let mut body = vec![0u8; length - 8];
                    stream.read_exact(&mut body).await.unwrap();
                    assert_eq!(header[4], 1, "a CONNECT packet");
                    let version = u16::from_be_bytes([body[0], body[1]]);
                    assert!(version >= 300, "version {version}");
                    let data_length = usize::from(u16::from_be_bytes([body[16], body[17]]));
                    let data_offset = usize::from(u16::from_be_bytes([body[18], body[19]]));
                    assert_eq!(data_offset + data_length, length, "connect data at the end");
                    let data = String::from_utf8(body[data_offset - 8..].to_vec()).unwrap();
                    assert!(
                        data.starts_with("(DESCRIPTION=(ADDRESS=(PROTOCOL=TCP)(HOST="),
                        "{data}"
                    );
                    let sid = data
                        .split("(SID=")
                        .nth(1)
                        .and_then(|rest| rest.split(')').next())
                        .unwrap_or_default()
                        .to_owned();
                    let answer = match sid.as_str() {
                        "ORCL" => accept(),
                        "SHARED" => redirect(),
                        "BUSY" if !resent => {
                            resent = true;
                            packet(11, &[])
                        }
                        "BUSY" => accept(),
                        _ => refuse(12505),
                    };
                    let _ = stream.write_all(&answer).await;
                    if sid != "BUSY" || !resent || answer[4] == 2 {
                        // Keep the connection open: the check closes it.
                        let mut rest = Vec::new();
                        let _ = stream.read_to_end(&mut rest).await;
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// nnrpd on 127.0.0.1 and ::1; with `refuse`, it turns every reader away (`400 <reason>`).
/// The overview database it needs is the system's (built by `cargo xtask setup`); the pid
/// file goes to a private run directory (INNCONF: a copy of inn.conf with its own pathrun).
pub fn nnrpd(refuse: Option<&str>) -> (Server, u16) {
    let port = free_port();
    let dir = Server::dir("nnrpd");
    let conf = std::fs::read_to_string("/etc/news/inn.conf").expect("inn2 is installed");
    let run_dir = dir.path().join("run");
    std::fs::create_dir(&run_dir).unwrap();
    chown(&run_dir, "news");
    let conf: String = conf
        .lines()
        .filter(|l| !l.starts_with("pathrun:"))
        .map(|l| format!("{l}\n"))
        .chain([format!("pathrun: {}\n", run_dir.display())])
        .collect();
    let inn_conf = dir.path().join("inn.conf");
    std::fs::write(&inn_conf, conf).unwrap();
    let (uid, gid) = ids("news");
    let mut command = Command::new("/usr/lib/news/bin/nnrpd");
    command.uid(uid).gid(gid).env("INNCONF", &inn_conf).args([
        "-D",
        "-f",
        "-4",
        "127.0.0.1",
        "-6",
        "::1",
        "-p",
        &port.to_string(),
    ]);
    if let Some(reason) = refuse {
        command.args(["-r", reason]);
    }
    let mut server = Server::start("nnrpd", dir, &mut command);
    server.wait_tcp(SocketAddr::new(V4, port));
    server.wait_tcp(SocketAddr::new(V6, port));
    (server, port)
}

/// mariadbd on 127.0.0.1 and ::1, with user `probe` (password `s3cret`) allowed to read the
/// database `shop`: table `items` (two rows) and `empty`.
pub fn mariadb() -> (Server, u16) {
    let port = free_port();
    let dir = Server::dir("mariadb");
    let data = dir.path().join("data");
    let socket = dir.path().join("mysqld.sock");
    run(Command::new("/usr/bin/mariadb-install-db")
        .arg("--no-defaults")
        .arg(format!("--datadir={}", data.display()))
        .args([
            "--user=root",
            "--auth-root-authentication-method=socket",
            "--skip-test-db",
        ]));
    let mut server = Server::start(
        "mariadb",
        dir,
        Command::new("/usr/sbin/mariadbd")
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}", socket.display()))
            .arg(format!("--port={port}"))
            .args([
                "--bind-address=127.0.0.1,::1",
                "--user=root",
                "--skip-log-bin",
            ])
            .args(["--innodb-buffer-pool-size=16M", "--pid-file=mariadb.pid"]),
    );
    server.wait_tcp(SocketAddr::new(V4, port));
    server.wait_tcp(SocketAddr::new(V6, port));
    run(Command::new("/usr/bin/mariadb")
        .arg("--no-defaults")
        .arg(format!("--socket={}", socket.display()))
        .args(["-u", "root", "-e"])
        .arg(
            "CREATE USER probe@'%' IDENTIFIED BY 's3cret'; CREATE DATABASE shop; \
             CREATE TABLE shop.items (id int); INSERT INTO shop.items VALUES (1), (2); \
             CREATE TABLE shop.empty (id int); GRANT SELECT ON shop.* TO probe@'%';",
        ));
    (server, port)
}
