//! `maintenancedir`: a file named after the real forces it down before every check.
//!
//! ldirectord looks, in order, for `<ip>:<port>`, `<ip>`, `<fqdn>:<port>`, `<fqdn>`,
//! `<short>:<port>` and `<short>` (IPv6 in brackets, the real's own port, not the check port),
//! where the names come from a reverse lookup (`NI_NAMEREQD`) made on every check. The lookup is
//! skipped when the directory is empty or an address file already matched, which is the
//! common case, so maintenance costs a directory read per check and a lookup only when
//! someone put a file there.

use std::ffi::CStr;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::spec::bracketed;

/// The names ldirectord tries for an address, in its order. The hostname ones appear only
/// when the reverse lookup found a name.
pub(crate) fn file_names(ip: IpAddr, port: u16, hostname: Option<&str>) -> Vec<String> {
    let addr = bracketed(ip);
    let mut names = vec![format!("{addr}:{port}"), addr];
    if let Some(fqdn) = hostname.filter(|h| !h.is_empty()) {
        names.push(format!("{fqdn}:{port}"));
        names.push(fqdn.to_owned());
        if let Some(short) = short_name(fqdn) {
            names.push(format!("{short}:{port}"));
            names.push(short.to_owned());
        }
    }
    names
}

/// ldirectord's `^([a-z][a-z0-9\-]+)\.`: the first label, lower case only, at least two
/// characters, followed by a dot.
pub(crate) fn short_name(fqdn: &str) -> Option<&str> {
    let label = &fqdn[..fqdn.find('.')?];
    let mut chars = label.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    let rest_ok =
        label.len() >= 2 && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    (first_ok && rest_ok).then_some(label)
}

/// Returns the maintenance file that forces the real down, if any. Runs on the blocking pool:
/// it reads a directory and may make a reverse lookup. A lookup that takes longer than
/// `lookup_timeout` counts as "no name" so the check itself still runs on time.
pub(crate) async fn find(
    dir: &Path,
    ip: IpAddr,
    port: u16,
    lookup_timeout: Duration,
) -> Option<PathBuf> {
    let dir_owned = dir.to_path_buf();
    let by_address =
        tokio::task::spawn_blocking(move || find_by_address(&dir_owned, ip, port)).await;
    match by_address {
        Ok(Lookup::Found(path)) => return Some(path),
        Ok(Lookup::Empty) | Err(_) => return None,
        Ok(Lookup::NeedName) => {}
    }
    let lookup = tokio::task::spawn_blocking(move || reverse_lookup(ip));
    // Never unbounded, even with `checktimeout = 00`: the check itself must still run.
    let lookup_timeout = if lookup_timeout.is_zero() {
        Duration::from_secs(5)
    } else {
        lookup_timeout
    };
    let hostname = match tokio::time::timeout(lookup_timeout, lookup).await {
        Ok(Ok(name)) => name?,
        _ => return None,
    };
    let dir_owned = dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        file_names(ip, port, Some(&hostname))
            .into_iter()
            .skip(2)
            .map(|name| dir_owned.join(name))
            .find(|path| path.exists())
    })
    .await
    .ok()
    .flatten()
}

enum Lookup {
    Found(PathBuf),
    Empty,
    NeedName,
}

fn find_by_address(dir: &Path, ip: IpAddr, port: u16) -> Lookup {
    // A missing or unreadable directory has no files in it: ldirectord's `-e` tests fail too.
    let has_entries = std::fs::read_dir(dir)
        .map(|mut entries| entries.next().is_some())
        .unwrap_or(false);
    if !has_entries {
        return Lookup::Empty;
    }
    match file_names(ip, port, None)
        .into_iter()
        .map(|name| dir.join(name))
        .find(|path| path.exists())
    {
        Some(path) => Lookup::Found(path),
        None => Lookup::NeedName,
    }
}

/// getnameinfo with NI_NAMEREQD, as ldirectord's `ld_gethostbyaddr`.
fn reverse_lookup(ip: IpAddr) -> Option<String> {
    let addr = socket2::SockAddr::from(SocketAddr::new(ip, 0));
    let mut host = [0 as libc::c_char; libc::NI_MAXHOST as usize];
    // SAFETY: `addr` is a valid sockaddr of `addr.len()` bytes; `host` is writable for its
    // length and getnameinfo NUL-terminates what it writes; no service buffer is requested.
    let rc = unsafe {
        libc::getnameinfo(
            addr.as_ptr().cast(),
            addr.len(),
            host.as_mut_ptr(),
            host.len() as libc::socklen_t,
            std::ptr::null_mut(),
            0,
            libc::NI_NAMEREQD,
        )
    };
    if rc != 0 {
        return None;
    }
    // SAFETY: on success getnameinfo wrote a NUL-terminated string into `host`.
    let name = unsafe { CStr::from_ptr(host.as_ptr()) };
    name.to_str().ok().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_in_ldirectord_order() {
        assert_eq!(
            file_names("10.0.0.5".parse().unwrap(), 80, Some("web1.example.com")),
            [
                "10.0.0.5:80",
                "10.0.0.5",
                "web1.example.com:80",
                "web1.example.com",
                "web1:80",
                "web1"
            ]
        );
    }

    #[test]
    fn ipv6_names_use_brackets() {
        assert_eq!(
            file_names("2001:db8::7".parse().unwrap(), 443, None),
            ["[2001:db8::7]:443", "[2001:db8::7]"]
        );
    }

    #[test]
    fn short_name_follows_ldirectords_pattern() {
        assert_eq!(short_name("web-1.example.com"), Some("web-1"));
        assert_eq!(short_name("Web1.example.com"), None);
        assert_eq!(short_name("w.example.com"), None);
        assert_eq!(short_name("1web.example.com"), None);
        assert_eq!(short_name("localhost"), None);
    }

    #[test]
    fn no_short_name_files_without_a_dot() {
        assert_eq!(
            file_names("127.0.0.1".parse().unwrap(), 0, Some("localhost")),
            ["127.0.0.1:0", "127.0.0.1", "localhost:0", "localhost"]
        );
    }
}
