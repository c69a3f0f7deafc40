//! The XDP backend: loads the balancer, attaches it to the configured interfaces, pins program,
//! links and maps under `/sys/fs/bpf/xdirectord/<config name>/`, and programs the maps from the
//! desired table.
//!
//! A later start finds the pins and reuses them: the same program keeps running and the flow
//! table is kept, so restarting the agent does not disturb established flows. A new build of the
//! program (a different object) is loaded against the pinned maps and swapped into the pinned
//! links atomically; a new map layout starts from fresh maps, with a warning.
//!
//! # Layout
//! * `dataplane`: executing ops on the maps, reading back what they hold.
//! * `expiry`: the sweep of idle flows and the connection counts it keeps right.
//! * `maps`: typed handles on the maps, layout checks of pinned maps.
//! * `tables`: the Maglev table and the round-robin sequence (pure).
//! * `paths`: where reals are, from the kernel's routing and neighbour tables.
//! * `live`: the maps read back as a table with counters, for `show`.
//! * `model` (feature `test-support`): user space's model of the program's scheduling
//!   decisions, for the tests.

pub mod capacity;
pub mod dataplane;
pub mod expiry;
pub mod flow_table;
pub mod live;
pub mod maps;
#[cfg(feature = "test-support")]
pub mod model;
pub mod paths;
pub mod tables;

use std::{
    io,
    path::{Path, PathBuf},
};

use aya::programs::{
    Xdp, XdpMode as AyaXdpMode,
    links::{FdLink, PinnedLink},
    xdp::XdpLink,
};
use aya_obj::programs::XdpAttachType;

use crate::{
    backend::{Backend, BackendError, Notes},
    objects,
    table::{BackendKind, DesiredTable, ServiceKey, diff::Op},
};
pub use capacity::Capacity;
pub use dataplane::{Dataplane, Paths, RealPath, validate};
use maps::Maps;
use paths::KernelPaths;

/// bpffs' magic number (statfs f_type).
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// How to attach the program.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum XdpMode {
    /// In the driver; falls back to generic, with a warning, where the driver has no XDP.
    #[default]
    Native,
    /// In the generic (skb) path: works everywhere, slower.
    Generic,
}

/// What the agent tells the backend.
#[derive(Clone, Debug)]
pub struct XdpOptions {
    /// The configuration's name: the pin directory's name.
    pub config_name: String,
    /// Interfaces to attach to (`interface = `).
    pub interfaces: Vec<String>,
    pub mode: XdpMode,
    /// `tunnelsource`.
    pub tunnel_source: Vec<lb_config::TunnelPrefix>,
    /// `maxflows`, `maxtemplates`, `maxvirtuals`, `maxreals`.
    pub capacity: Capacity,
}

/// The XDP data plane of one configuration.
pub struct XdpBackend {
    dataplane: Dataplane,
    paths: KernelPaths,
    pin_dir: PathBuf,
    /// Whether this agent has applied anything: until then, whatever is pinned is another
    /// agent's doing (a restarted agent holds off its first apply until its reals are checked),
    /// and stays, also at shutdown.
    applied: bool,
    /// When the flow tables were last swept for idle flows.
    last_expiry: Option<std::time::Instant>,
}

/// How often `refresh` sweeps the flow tables: a sweep reads every flow, and the shortest idle
/// timeout is a minute.
const EXPIRY_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// Where bpffs is: `/sys/fs/bpf`; or, when that is not bpffs (as under `ip netns exec`, which
/// mounts a fresh /sys), the host's bpffs seen through init's root, so pins outlive this mount
/// namespace; or else a bpffs mounted here and now.
pub fn bpffs_root() -> io::Result<PathBuf> {
    let host = Path::new("/sys/fs/bpf");
    if is_bpffs(host) {
        return Ok(host.to_path_buf());
    }
    let through_init = Path::new("/proc/1/root/sys/fs/bpf");
    if is_bpffs(through_init) {
        return Ok(through_init.to_path_buf());
    }
    std::fs::create_dir_all(host)?;
    let mounted = unsafe {
        libc::mount(
            c"bpf".as_ptr(),
            c"/sys/fs/bpf".as_ptr(),
            c"bpf".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if mounted != 0 {
        return Err(io::Error::other(format!(
            "cannot mount bpffs on /sys/fs/bpf: {}",
            io::Error::last_os_error()
        )));
    }
    Ok(host.to_path_buf())
}

fn is_bpffs(path: &Path) -> bool {
    let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid C string and a statfs buffer.
    unsafe { libc::statfs(c_path.as_ptr(), &mut stat) == 0 && stat.f_type as i64 == BPF_FS_MAGIC }
}

/// `<bpffs>/xdirectord/<config name>`, with every `.` of the name written `_`: bpffs refuses
/// names with dots (`ldirectord.cf` pins under `ldirectord_cf`).
pub fn pin_dir(config_name: &str) -> io::Result<PathBuf> {
    Ok(bpffs_root()?
        .join("xdirectord")
        .join(config_name.replace('.', "_")))
}

/// A name for this build's program, so a restart can tell whether the pinned program is its own.
fn program_pin_name() -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in objects::BALANCER {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("prog_{h:016x}")
}

/// The id of the program pinned in `dir` (the one a configuration's links run), if any.
pub fn pinned_program_id(dir: &Path) -> Option<u32> {
    let entries = std::fs::read_dir(dir).ok()?;
    entries.flatten().find_map(|entry| {
        let name = entry.file_name();
        if !name.to_string_lossy().starts_with("prog_") {
            return None;
        }
        let program = Xdp::from_pin(entry.path(), XdpAttachType::Interface).ok()?;
        program.info().ok().map(|info| info.id())
    })
}

fn link_pin_name(interface: &str) -> String {
    format!("link_{interface}")
}

fn system(context: impl Into<String>) -> impl FnOnce(io::Error) -> BackendError {
    let context = context.into();
    move |e| BackendError::system(context, e)
}

impl XdpBackend {
    /// Loads (or finds pinned) program and maps, and attaches to the interfaces.
    pub fn open(options: &XdpOptions) -> Result<XdpBackend, BackendError> {
        if options.interfaces.is_empty() {
            return Err(BackendError::Unsupported(
                "the XDP backend needs an interface to attach to: set `interface = ` in the \
                 configuration or give --interface"
                    .into(),
            ));
        }
        let dir = pin_dir(&options.config_name).map_err(system("bpffs"))?;
        std::fs::create_dir_all(&dir).map_err(system(format!("creating {}", dir.display())))?;
        // Builds before the test clock left the agent's program pinned a CLOCK map; no program
        // reads it now.
        remove_pins(&dir, |name| name == lb_common::maps::CLOCK)?;

        let maps_pinned = lb_common::maps::ALL
            .iter()
            .all(|name| dir.join(name).exists());
        let mut reuse_maps = maps_pinned;
        if maps_pinned && let Err(why) = maps::check_pinned_layout(&dir) {
            eprintln!(
                "xdirectord: the maps pinned in {} have another layout ({why}); starting with \
                 fresh maps: established flows will be placed again",
                dir.display()
            );
            remove_pins(&dir, |name| !name.starts_with("link_"))?;
            reuse_maps = false;
        }
        // Pinned maps keep their size (and the flows and templates they hold); the program
        // must hash over the flow tables' buckets as they are.
        let capacity = if reuse_maps {
            Capacity::pinned(&dir)?
        } else {
            options.capacity
        };
        for difference in capacity.differences(&options.capacity) {
            eprintln!(
                "xdirectord: {difference}: takes effect when xdirectord is stopped and started \
                 again (a restart keeps the maps in {} and what they hold)",
                dir.display()
            );
        }
        let buckets = capacity.buckets();
        let program_pin = dir.join(program_pin_name());
        let (mut program, maps) = if reuse_maps && program_pin.exists() {
            let program = Xdp::from_pin(&program_pin, XdpAttachType::Interface).map_err(|e| {
                BackendError::system(format!("opening {}", program_pin.display()), e)
            })?;
            (program, Maps::from_pins(&dir)?)
        } else {
            let mut loader = aya::EbpfLoader::new();
            for name in lb_common::maps::ALL {
                loader.map_pin_path(name, dir.join(name));
            }
            capacity.size(&mut loader, &buckets);
            let mut ebpf = loader
                .load(objects::BALANCER)
                .map_err(|e| capacity.load_error(e))?;
            let prog: &mut Xdp = ebpf
                .program_mut(objects::BALANCER_PROGRAM)
                .ok_or_else(|| {
                    BackendError::Unsupported("the XDP object has no balancer program".into())
                })?
                .try_into()
                .map_err(|e| BackendError::system("the balancer program", e))?;
            prog.load()
                .map_err(|e| BackendError::system("verifying the XDP program", e))?;
            remove_pins(&dir, |name| name.starts_with("prog_"))?;
            prog.pin(&program_pin).map_err(|e| {
                BackendError::system(format!("pinning {}", program_pin.display()), e)
            })?;
            install_tunnel(&mut ebpf)?;
            let maps = Maps::from_ebpf(&mut ebpf)?;
            let program = Xdp::from_pin(&program_pin, XdpAttachType::Interface).map_err(|e| {
                BackendError::system(format!("opening {}", program_pin.display()), e)
            })?;
            (program, maps)
        };
        let mut dataplane = Dataplane::new(maps);
        dataplane.tunnel_source = options.tunnel_source.clone();

        // The maps may come from another build, whose program hashes the VIP filter another
        // way: while programs are swapped, the filter lets every packet through to the VIP
        // lookup (right for both), then it is rebuilt for this build from the VIPs in the maps,
        // so that they forward before the first apply.
        dataplane.open_filter()?;
        for interface in &options.interfaces {
            attach(&mut program, interface, options.mode, &dir)?;
            let ifindex = ifindex(interface)?;
            dataplane
                .maps
                .tx_ports
                .insert(ifindex, ifindex, None, 0)
                .map_err(|e| BackendError::system(format!("adding {interface} to TX_PORTS"), e))?;
        }
        // Interfaces no longer configured: unpinning their link detaches the program.
        remove_pins(&dir, |name| {
            name.strip_prefix("link_")
                .is_some_and(|i| !options.interfaces.iter().any(|c| c == i))
        })?;
        dataplane.rebuild_filter()?;

        let attached = options
            .interfaces
            .iter()
            .map(|i| ifindex(i))
            .collect::<Result<Vec<_>, _>>()?;
        let paths = KernelPaths::new(attached).map_err(system("reading routes and neighbours"))?;
        Ok(XdpBackend {
            dataplane,
            paths,
            pin_dir: dir,
            applied: false,
            last_expiry: None,
        })
    }

    /// The maps, for reading counters.
    pub fn dataplane(&self) -> &Dataplane {
        &self.dataplane
    }
}

impl Backend for XdpBackend {
    fn apply(&mut self, ops: &[Op]) -> Result<Notes, BackendError> {
        self.paths
            .refresh()
            .map_err(system("reading routes and neighbours"))?;
        self.applied = true;
        self.dataplane.execute(ops, &mut self.paths)
    }

    fn held(&self) -> Result<DesiredTable, BackendError> {
        self.dataplane.held()
    }

    /// Looks up every real's path again and writes the services whose reals moved (a
    /// neighbour resolved or changed, a route changed), or that the maps lost; every ten
    /// seconds, also expires idle flows.
    fn refresh(&mut self, desired: Option<&DesiredTable>) -> Result<Notes, BackendError> {
        let mut notes = Notes::new();
        if let Some(desired) = desired {
            self.paths
                .refresh()
                .map_err(system("reading routes and neighbours"))?;
            let ours = desired.on(BackendKind::Xdp);
            let keys: std::collections::BTreeSet<ServiceKey> =
                ours.services.keys().copied().collect();
            notes = self.dataplane.write(&ours, &keys, &mut self.paths)?;
        }
        if self
            .last_expiry
            .is_none_or(|t| t.elapsed() >= EXPIRY_INTERVAL)
        {
            self.last_expiry = Some(std::time::Instant::now());
            self.dataplane.expire_flows()?;
        }
        Ok(notes)
    }

    /// With nothing left to forward (every virtual stopped with `cleanstop = yes`), detaches the
    /// program and removes the pins; otherwise leaves everything forwarding for the next agent.
    fn shutdown(&mut self) -> Result<(), BackendError> {
        if !self.applied || !self.dataplane.programmed()?.is_empty() {
            return Ok(());
        }
        remove_pins(&self.pin_dir, |_| true)?;
        std::fs::remove_dir(&self.pin_dir)
            .map_err(system(format!("removing {}", self.pin_dir.display())))
    }
}

/// Which build of the balancer [`load_unattached`] loads, by the clock it reads.
#[cfg(feature = "test-support")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgramClock {
    /// The kernel's: the agent's program, byte for byte ([`objects::BALANCER`]): for benchmarks.
    Kernel,
    /// The CLOCK map's while it is set (the kernel's while it is 0): the test-clock build
    /// ([`objects::BALANCER_TEST_CLOCK`]), for packet tests of timeouts.
    Test,
}

/// Loads the balancer and creates its maps without pinning or attaching anything: for packet
/// tests (BPF_PROG_TEST_RUN) and benchmarks. Keep the `Ebpf` alive while running the program.
#[cfg(feature = "test-support")]
pub fn load_unattached(
    clock: ProgramClock,
    capacity: Capacity,
) -> Result<(aya::Ebpf, Dataplane), BackendError> {
    let object = match clock {
        ProgramClock::Kernel => objects::BALANCER,
        ProgramClock::Test => objects::BALANCER_TEST_CLOCK,
    };
    let buckets = capacity.buckets();
    let mut loader = aya::EbpfLoader::new();
    capacity.size(&mut loader, &buckets);
    let mut ebpf = loader.load(object).map_err(|e| capacity.load_error(e))?;
    let prog: &mut Xdp = ebpf
        .program_mut(objects::BALANCER_PROGRAM)
        .ok_or_else(|| BackendError::Unsupported("the XDP object has no balancer program".into()))?
        .try_into()
        .map_err(|e| BackendError::system("the balancer program", e))?;
    prog.load()
        .map_err(|e| BackendError::system("verifying the XDP program", e))?;
    install_tunnel(&mut ebpf)?;
    let maps = Maps::from_ebpf(&mut ebpf)?;
    Ok((ebpf, Dataplane::new(maps)))
}

/// Loads the tunnel program and puts it where the balancer tail-calls it. The program array
/// keeps it alive (with the array pinned, also after this process).
fn install_tunnel(ebpf: &mut aya::Ebpf) -> Result<(), BackendError> {
    let program: &mut Xdp = ebpf
        .program_mut(objects::TUNNEL_PROGRAM)
        .ok_or_else(|| BackendError::Unsupported("the XDP object has no tunnel program".into()))?
        .try_into()
        .map_err(|e| BackendError::system("the tunnel program", e))?;
    program
        .load()
        .map_err(|e| BackendError::system("verifying the XDP tunnel program", e))?;
    let fd = program
        .fd()
        .map_err(|e| BackendError::system("the tunnel program", e))?
        .try_clone()
        .map_err(|e| BackendError::system("the tunnel program", e))?;
    let map = ebpf
        .map_mut(lb_common::maps::TUNNEL_PROG)
        .ok_or_else(|| BackendError::Unsupported("the XDP object has no TUNNEL_PROG".into()))?;
    let mut array = aya::maps::ProgramArray::try_from(map)
        .map_err(|e| BackendError::system("TUNNEL_PROG", e))?;
    array
        .set(0, &fd, 0)
        .map_err(|e| BackendError::system("writing TUNNEL_PROG", e))
}

/// The index of a network interface.
pub fn ifindex(interface: &str) -> Result<u32, BackendError> {
    let name = std::ffi::CString::new(interface)
        .map_err(|_| BackendError::Unsupported(format!("bad interface name {interface:?}")))?;
    // SAFETY: a valid C string.
    match unsafe { libc::if_nametoindex(name.as_ptr()) } {
        0 => Err(BackendError::Unsupported(format!(
            "no interface {interface}"
        ))),
        i => Ok(i),
    }
}

/// Attaches `program` to `interface` through a pinned link, or swaps it into the pinned link an
/// earlier agent left (atomically: no packet misses a program). A pinned link that no longer works
/// (its interface was deleted and made again) is replaced by a fresh one.
fn attach(
    program: &mut Xdp,
    interface: &str,
    mode: XdpMode,
    dir: &Path,
) -> Result<(), BackendError> {
    let pin = dir.join(link_pin_name(interface));
    if pin.exists() {
        match replace_pinned(program, &pin) {
            Ok(()) => return Ok(()),
            Err(e) => {
                eprintln!(
                    "xdirectord: {interface}: the pinned link cannot take the program ({e}); \
                     attaching afresh"
                );
                std::fs::remove_file(&pin)
                    .map_err(system(format!("removing {}", pin.display())))?;
            }
        }
    }
    let id = match mode {
        XdpMode::Generic => program.attach(interface, AyaXdpMode::Skb),
        XdpMode::Native => program
            .attach(interface, AyaXdpMode::Driver)
            .or_else(|native| {
                eprintln!(
                    "xdirectord: {interface}: native XDP is not possible ({native}); attaching in \
                     generic mode, which is slower"
                );
                program.attach(interface, AyaXdpMode::Skb)
            }),
    }
    .map_err(|e| BackendError::system(format!("attaching to {interface}"), e))?;
    let link: FdLink = program
        .take_link(id)
        .map_err(|e| BackendError::system("taking the link", e))?
        .try_into()
        .map_err(|e| BackendError::system("link", e))?;
    link.pin(&pin)
        .map_err(|e| BackendError::system(format!("pinning {}", pin.display()), e))?;
    Ok(())
}

/// Puts `program` into the link pinned at `pin` (a no-op swap when it already runs there; an
/// error when the link no longer has an interface).
fn replace_pinned(program: &mut Xdp, pin: &Path) -> Result<(), BackendError> {
    let pinned = PinnedLink::from_pin(pin)
        .map_err(|e| BackendError::system(format!("opening {}", pin.display()), e))?;
    let link = FdLink::from(pinned);
    let id = program
        .attach_to_link(
            XdpLink::try_from(link).map_err(|e| BackendError::system("pinned link", e))?,
        )
        .map_err(|e| BackendError::system("bpf_link_update", e))?;
    // The link stays alive through its pin; forget our handle without detaching.
    let link = program
        .take_link(id)
        .map_err(|e| BackendError::system("taking the link", e))?;
    drop(link);
    Ok(())
}

/// Removes the pins in `dir` whose names `select` picks.
fn remove_pins(dir: &Path, select: impl Fn(&str) -> bool) -> Result<(), BackendError> {
    let entries = std::fs::read_dir(dir).map_err(system(format!("reading {}", dir.display())))?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        if select(&name.to_string_lossy()) {
            std::fs::remove_file(entry.path())
                .map_err(system(format!("removing {}", entry.path().display())))?;
        }
    }
    Ok(())
}
