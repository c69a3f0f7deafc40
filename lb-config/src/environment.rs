//! What reading a configuration asks of the machine: name and service lookups, the host name,
//! and the few files ldirectord opens while parsing. Behind a trait so the parser stays pure
//! and tests need neither DNS nor a file system.

use std::ffi::{CStr, CString, OsStr};
use std::fs::OpenOptions;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::model::Family;

/// The system facts ldirectord's `read_config` depends on.
pub trait Environment {
    /// `getaddrinfo(name, "0", family)`: the first result, formatted numerically by
    /// `getnameinfo(NI_NUMERICHOST)` (`127.0.0.1`, `2001:db8::1`, `fe80::1%eth0`). An empty name
    /// means "no node", which getaddrinfo answers with the loopback address.
    fn resolve_host(&self, name: &[u8], family: Family) -> Option<String>;
    /// `getservbyname(name, protocol)`; an empty protocol matches any protocol.
    fn resolve_service(&self, name: &[u8], protocol: &str) -> Option<u16>;
    /// `$HOSTNAME`, else the node name: ldirectord's default ftp password and sip login use it.
    fn hostname(&self) -> String;
    /// Open the file for appending (creating it) and close it again, as ldirectord tests
    /// `monitorfile` and `logfile`; the error is the C library's text for errno.
    fn open_append(&self, path: &Path) -> Result<(), String>;
    /// Perl's `-d`.
    fn is_dir(&self, path: &Path) -> bool;
}

/// The real machine: the C library resolver, `/etc/services`, the real file system.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemEnvironment;

impl Environment for SystemEnvironment {
    fn resolve_host(&self, name: &[u8], family: Family) -> Option<String> {
        getaddrinfo_numeric(name, family)
    }

    fn resolve_service(&self, name: &[u8], protocol: &str) -> Option<u16> {
        getservbyname(name, protocol)
    }

    fn hostname(&self) -> String {
        if let Some(h) = std::env::var_os("HOSTNAME") {
            return h.to_string_lossy().into_owned();
        }
        let mut buf = [0u8; 256];
        // SAFETY: the buffer is valid for its length; gethostname NUL-terminates on success
        // when the name fits, and the last byte stays 0 otherwise.
        let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len() - 1) };
        if rc != 0 {
            return String::new();
        }
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    }

    fn open_append(&self, path: &Path) -> Result<(), String> {
        OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .map(drop)
            .map_err(|e| strerror(e.raw_os_error().unwrap_or(libc::EIO)))
    }

    fn is_dir(&self, path: &Path) -> bool {
        path.is_dir()
    }
}

fn getaddrinfo_numeric(name: &[u8], family: Family) -> Option<String> {
    let node = CString::new(name).ok()?;
    // SAFETY: addrinfo is plain old data; all-zero is the documented "no hints" value.
    let mut hints: libc::addrinfo = unsafe { std::mem::zeroed() };
    hints.ai_family = match family {
        Family::Inet => libc::AF_INET,
        Family::Inet6 => libc::AF_INET6,
    };
    let node_ptr = if name.is_empty() {
        std::ptr::null()
    } else {
        node.as_ptr()
    };
    let mut res: *mut libc::addrinfo = std::ptr::null_mut();
    // SAFETY: valid C strings and hints; res is freed below.
    let rc = unsafe { libc::getaddrinfo(node_ptr, c"0".as_ptr(), &hints, &mut res) };
    if rc != 0 || res.is_null() {
        return None;
    }
    let mut host = [0 as libc::c_char; libc::NI_MAXHOST as usize];
    // SAFETY: res is a valid list from getaddrinfo; its first entry's address is valid for
    // ai_addrlen bytes; host is writable for its length.
    let rc = unsafe {
        let first = &*res;
        let rc = libc::getnameinfo(
            first.ai_addr,
            first.ai_addrlen,
            host.as_mut_ptr(),
            host.len() as libc::socklen_t,
            std::ptr::null_mut(),
            0,
            libc::NI_NUMERICHOST | libc::NI_NUMERICSERV,
        );
        libc::freeaddrinfo(res);
        rc
    };
    if rc != 0 {
        return None;
    }
    // SAFETY: getnameinfo NUL-terminates on success.
    let text = unsafe { CStr::from_ptr(host.as_ptr()) };
    Some(text.to_string_lossy().into_owned())
}

unsafe extern "C" {
    // glibc's reentrant form; the libc crate does not declare it. getservbyname() itself
    // returns a static buffer, which the agent's threads could race on.
    fn getservbyname_r(
        name: *const libc::c_char,
        proto: *const libc::c_char,
        result_buf: *mut libc::servent,
        buf: *mut libc::c_char,
        buflen: libc::size_t,
        result: *mut *mut libc::servent,
    ) -> libc::c_int;
}

fn getservbyname(name: &[u8], protocol: &str) -> Option<u16> {
    let name = CString::new(name).ok()?;
    let proto = CString::new(protocol).ok()?;
    // Perl passes an empty protocol as NULL: any protocol matches.
    let proto_ptr = if protocol.is_empty() {
        std::ptr::null()
    } else {
        proto.as_ptr()
    };
    // SAFETY: servent is plain old data.
    let mut entry: libc::servent = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 4096];
    let mut result: *mut libc::servent = std::ptr::null_mut();
    // SAFETY: all pointers are valid for the call; buf outlives the use of entry.
    let rc = unsafe {
        getservbyname_r(
            name.as_ptr(),
            proto_ptr,
            &mut entry,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() {
        return None;
    }
    // s_port holds the port in network byte order in an int.
    Some(u16::from_be(entry.s_port as u16))
}

/// The C library's message for an errno, as Perl's `$!` prints it.
pub(crate) fn strerror(errno: i32) -> String {
    let mut buf = [0 as libc::c_char; 256];
    // SAFETY: buf is writable for its length; the XSI strerror_r NUL-terminates on success.
    let rc = unsafe { libc::strerror_r(errno, buf.as_mut_ptr(), buf.len()) };
    if rc != 0 {
        return format!("Unknown error {errno}");
    }
    // SAFETY: NUL-terminated above.
    unsafe { CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

/// A path from the raw bytes of a configuration value.
pub(crate) fn path_from_bytes(bytes: &[u8]) -> &Path {
    Path::new(OsStr::from_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_hosts_resolve_like_inet_aton() {
        let env = SystemEnvironment;
        assert_eq!(
            env.resolve_host(b"127.0.0.1", Family::Inet).as_deref(),
            Some("127.0.0.1")
        );
        // glibc's getaddrinfo accepts every inet_aton form, which ldirectord relies on.
        assert_eq!(
            env.resolve_host(b"010.1.1.1", Family::Inet).as_deref(),
            Some("8.1.1.1")
        );
        assert_eq!(
            env.resolve_host(b"5060", Family::Inet).as_deref(),
            Some("0.0.19.196")
        );
        assert_eq!(
            env.resolve_host(b"", Family::Inet).as_deref(),
            Some("127.0.0.1")
        );
        assert_eq!(env.resolve_host(b"::1", Family::Inet), None);
        assert_eq!(
            env.resolve_host(b"2001:DB8::0:1", Family::Inet6).as_deref(),
            Some("2001:db8::1")
        );
        assert_eq!(env.resolve_host(b"a\0b", Family::Inet), None);
    }

    #[test]
    fn services_resolve_per_protocol() {
        let env = SystemEnvironment;
        assert_eq!(env.resolve_service(b"http", "tcp"), Some(80));
        assert_eq!(env.resolve_service(b"http", ""), Some(80));
        assert_eq!(env.resolve_service(b"domain", "udp"), Some(53));
        assert_eq!(env.resolve_service(b"no-such-service", ""), None);
    }

    #[test]
    fn open_append_reports_errno_text() {
        let env = SystemEnvironment;
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(env.open_append(&dir.path().join("m")), Ok(()));
        assert_eq!(
            env.open_append(&dir.path().join("no/such/file")),
            Err("No such file or directory".to_string())
        );
        assert!(env.is_dir(dir.path()));
    }
}
