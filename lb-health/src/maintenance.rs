//! `maintenancedir`: a file named after the real forces it down before every check.
//!
//! ldirectord looks, in order, for `<ip>:<port>`, `<ip>`, `<fqdn>:<port>`, `<fqdn>`,
//! `<short>:<port>` and `<short>` (IPv6 in brackets, the real's own port, not the check port),
//! where the names come from a reverse lookup (`NI_NAMEREQD`) made on every check. Here the
//! directory is listed once for all checks of a runner (at most every [`LISTING_MAX_AGE`]),
//! and the lookup is skipped when the directory is empty or an address file already matched,
//! which is the common case: maintenance then costs a check nothing but a set lookup.

use std::collections::{HashMap, HashSet};
use std::ffi::{CStr, OsStr, OsString};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

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

/// How old a directory listing may be when a check uses it. Every check of a runner shares
/// the listing, so the directory is read at most ten times a second whatever the number of
/// checks; a maintenance file takes effect within this time (ldirectord sees it at its next
/// check, which is at least a second away).
pub(crate) const LISTING_MAX_AGE: Duration = Duration::from_millis(100);

/// A listing is kept without reading the directory again when the directory's mtime has not
/// changed and was already this old when the listing was read: a file created within the
/// same timestamp tick as the last read could otherwise go unseen.
const MTIME_SETTLED: Duration = Duration::from_secs(1);

/// The listings of the maintenance directories, shared by every check of a runner.
#[derive(Debug, Default)]
pub(crate) struct Listings {
    dirs: Mutex<HashMap<PathBuf, Arc<Listing>>>,
}

#[derive(Debug, Default)]
struct Listing {
    /// One refresh at a time; checks that arrive meanwhile wait for it and share it.
    refresh: tokio::sync::Mutex<()>,
    current: Mutex<Option<Snapshot>>,
}

#[derive(Debug, Clone)]
struct Snapshot {
    read_at: Instant,
    read_wall: SystemTime,
    mtime: Option<SystemTime>,
    /// The names `-e` finds: dangling symbolic links left out.
    names: Arc<HashSet<OsString>>,
}

impl Listings {
    /// The maintenance file in `dir` that forces the real down, if any.
    ///
    /// Reading the directory (when the shared listing is too old) and the reverse lookup run
    /// on the blocking pool, each bounded by `timeout` (5 s when that is zero): past it the
    /// real counts as not in maintenance, so the check itself still runs on time.
    pub(crate) async fn find(
        &self,
        dir: &Path,
        ip: IpAddr,
        port: u16,
        timeout: Duration,
    ) -> Option<PathBuf> {
        let timeout = if timeout.is_zero() {
            Duration::from_secs(5)
        } else {
            timeout
        };
        let names = self.listing(dir).fresh(dir, timeout).await?;
        // The usual case: an empty directory costs no allocation and no system call.
        if names.is_empty() {
            return None;
        }
        let by_address = file_names(ip, port, None);
        if let Some(name) = by_address.iter().find(|n| names.contains(OsStr::new(n))) {
            return Some(dir.join(name));
        }
        let lookup = tokio::task::spawn_blocking(move || reverse_lookup(ip));
        let hostname = match tokio::time::timeout(timeout, lookup).await {
            Ok(Ok(name)) => name?,
            _ => return None,
        };
        file_names(ip, port, Some(&hostname))
            .into_iter()
            .skip(2)
            .find(|n| names.contains(OsStr::new(n)))
            .map(|name| dir.join(name))
    }

    fn listing(&self, dir: &Path) -> Arc<Listing> {
        let mut dirs = self.dirs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(listing) = dirs.get(dir) {
            return Arc::clone(listing);
        }
        let listing = Arc::new(Listing::default());
        dirs.insert(dir.to_path_buf(), Arc::clone(&listing));
        listing
    }
}

impl Listing {
    fn fresh_snapshot(&self) -> Option<Snapshot> {
        let current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        current
            .as_ref()
            .filter(|s| s.read_at.elapsed() < LISTING_MAX_AGE)
            .cloned()
    }

    /// The names in the directory, read at most `LISTING_MAX_AGE` ago; `None` when reading it
    /// took longer than `timeout`.
    async fn fresh(&self, dir: &Path, timeout: Duration) -> Option<Arc<HashSet<OsString>>> {
        if let Some(snapshot) = self.fresh_snapshot() {
            return Some(snapshot.names);
        }
        let _refreshing = tokio::time::timeout(timeout, self.refresh.lock())
            .await
            .ok()?;
        if let Some(snapshot) = self.fresh_snapshot() {
            return Some(snapshot.names);
        }
        let previous = self
            .current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let dir = dir.to_path_buf();
        let read = tokio::task::spawn_blocking(move || read_listing(&dir, previous));
        let snapshot = tokio::time::timeout(timeout, read).await.ok()?.ok()?;
        let names = Arc::clone(&snapshot.names);
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(snapshot);
        Some(names)
    }
}

/// Lists `dir`, or keeps `previous` when the directory has provably not changed since.
fn read_listing(dir: &Path, previous: Option<Snapshot>) -> Snapshot {
    let (read_at, read_wall) = (Instant::now(), SystemTime::now());
    let mtime = std::fs::metadata(dir).and_then(|m| m.modified()).ok();
    if let Some(previous) = previous
        && previous.mtime.is_some()
        && previous.mtime == mtime
        && mtime.is_some_and(|m| {
            previous
                .read_wall
                .duration_since(m)
                .is_ok_and(|age| age >= MTIME_SETTLED)
        })
    {
        return Snapshot {
            read_at,
            read_wall,
            ..previous
        };
    }
    // A missing or unreadable directory has no files in it: ldirectord's `-e` tests fail too.
    let mut names = HashSet::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let dangling = entry.file_type().is_ok_and(|t| t.is_symlink())
                && std::fs::metadata(entry.path()).is_err();
            if !dangling {
                names.insert(entry.file_name());
            }
        }
    }
    Snapshot {
        read_at,
        read_wall,
        mtime,
        names: Arc::new(names),
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
    fn a_listing_is_kept_only_while_the_directory_provably_did_not_change() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("10.0.0.5"), "").unwrap();
        let first = read_listing(dir.path(), None);
        assert!(first.names.contains(OsStr::new("10.0.0.5")));
        let mtime = first.mtime.expect("a directory has an mtime");
        let stale = |read_wall| Snapshot {
            read_wall,
            names: Arc::new(HashSet::from([OsString::from("stale")])),
            ..first.clone()
        };
        // Read well after its last change: the old listing stands.
        let kept = read_listing(dir.path(), Some(stale(mtime + Duration::from_secs(2))));
        assert!(kept.names.contains(OsStr::new("stale")));
        // Read within the same second as a change: it is read again.
        let reread = read_listing(dir.path(), Some(stale(mtime)));
        assert!(reread.names.contains(OsStr::new("10.0.0.5")));
        // A dangling symbolic link is not a file, as for `-e`.
        std::os::unix::fs::symlink(dir.path().join("gone"), dir.path().join("10.0.0.6")).unwrap();
        let listed = read_listing(dir.path(), None);
        assert!(!listed.names.contains(OsStr::new("10.0.0.6")));
        assert!(
            read_listing(&dir.path().join("missing"), None)
                .names
                .is_empty()
        );
    }

    #[test]
    fn no_short_name_files_without_a_dot() {
        assert_eq!(
            file_names("127.0.0.1".parse().unwrap(), 0, Some("localhost")),
            ["127.0.0.1:0", "127.0.0.1", "localhost:0", "localhost"]
        );
    }
}
