//! How much the data plane's maps hold (`maxflows`, `maxtemplates`, `maxvirtuals`, `maxreals`):
//! set when the maps are created, read back from pinned maps (which keep their size across
//! restarts), and the kernel refusing the memory said in an operator's terms.

use std::path::Path;

use lb_common::maps::{self as names, FLOW_WAYS, flow_buckets};

use crate::backend::BackendError;

/// The sizes of the data plane's maps, per address family where a family has its own map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capacity {
    /// Flows per address family (`maxflows`): [`flow_buckets`] buckets of four.
    pub flows: u32,
    /// Persistence templates per address family (`maxtemplates`).
    pub templates: u32,
    /// Virtual services (`maxvirtuals`); each owns two table slots.
    pub virtuals: u32,
    /// Real ids (`maxreals`), id 0 reserved.
    pub reals: u32,
}

impl Default for Capacity {
    fn default() -> Capacity {
        Capacity {
            flows: names::DEFAULT_FLOWS,
            templates: names::PERSIST_TABLE_SIZE,
            virtuals: names::MAX_VIPS,
            reals: names::MAX_REALS,
        }
    }
}

impl Capacity {
    /// The flow tables' buckets (also the program's `FLOW_BUCKETS`).
    pub fn buckets(&self) -> u32 {
        flow_buckets(self.flows)
    }

    /// Sizes the maps a loader creates, and tells the program the flow tables' buckets
    /// (`buckets`, which must be [`Capacity::buckets`] and outlive the loader).
    pub fn size<'a>(&self, loader: &mut aya::EbpfLoader<'a>, buckets: &'a u32) {
        assert_eq!(*buckets, self.buckets());
        let slots = self.virtuals * 2;
        let sizes = [
            (names::FLOWS4, *buckets),
            (names::FLOWS6, *buckets),
            (names::PERSIST4, self.templates),
            (names::PERSIST6, self.templates),
            (names::VIPS4, self.virtuals),
            (names::VIPS6, self.virtuals),
            (names::VIP_STATS, self.virtuals),
            (names::SLOT_REALS, slots),
            (names::RINGS, slots),
            (names::WRR_SEQS, slots),
            (names::WRR_CURSORS, slots),
            (names::REALS, self.reals),
            (names::CONNS, self.reals),
            (names::CONNS_EXPIRED, self.reals),
            (names::REAL_STATS, self.reals),
        ];
        for (name, entries) in sizes {
            loader.map_max_entries(name, entries);
        }
        loader.override_global(names::FLOW_BUCKETS, buckets, true);
    }

    /// The sizes of the maps pinned in `dir`.
    pub fn pinned(dir: &Path) -> Result<Capacity, BackendError> {
        let entries = |name: &str| {
            let path = dir.join(name);
            aya::maps::MapInfo::from_pin(&path)
                .map(|info| info.max_entries())
                .map_err(|e| BackendError::system(format!("reading {}", path.display()), e))
        };
        Ok(Capacity {
            flows: entries(names::FLOWS4)? * FLOW_WAYS,
            templates: entries(names::PERSIST4)?,
            virtuals: entries(names::VIPS4)?,
            reals: entries(names::REALS)?,
        })
    }

    /// What differs from `wanted`, as the directives say it.
    pub fn differences(&self, wanted: &Capacity) -> Vec<String> {
        [
            ("maxflows", self.flows, wanted.flows),
            ("maxtemplates", self.templates, wanted.templates),
            ("maxvirtuals", self.virtuals, wanted.virtuals),
            ("maxreals", self.reals, wanted.reals),
        ]
        .into_iter()
        .filter(|(_, held, wanted)| held != wanted)
        .map(|(name, held, wanted)| format!("{name} = {wanted} (the pinned maps hold {held})"))
        .collect()
    }

    /// A loading error; the kernel refusing the maps' memory said in an operator's terms.
    pub fn load_error(&self, e: aya::EbpfError) -> BackendError {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(c) = cause {
            if let Some(io) = c.downcast_ref::<std::io::Error>()
                && matches!(io.raw_os_error(), Some(libc::ENOMEM | libc::E2BIG))
            {
                return BackendError::Unsupported(self.refused(&e));
            }
            cause = c.source();
        }
        BackendError::system("loading the XDP program", e)
    }

    fn refused(&self, e: &dyn std::fmt::Display) -> String {
        let bytes = names::flow_table_bytes(self.buckets());
        format!(
            "the kernel refused the memory for the data plane's maps ({e}): the flow tables of {} \
             flows per family need {} MiB each; lower maxflows (or maxtemplates, maxvirtuals, \
             maxreals)",
            u64::from(self.buckets()) * u64::from(FLOW_WAYS),
            bytes >> 20
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_map_names_the_directive() {
        let capacity = Capacity {
            flows: 10_000_000,
            ..Capacity::default()
        };
        let e = aya::EbpfError::MapError(aya::maps::MapError::CreateError {
            name: "FLOWS4".into(),
            io_error: std::io::Error::from_raw_os_error(libc::ENOMEM),
        });
        let BackendError::Unsupported(message) = capacity.load_error(e) else {
            panic!("not explained")
        };
        assert!(
            message.starts_with("the kernel refused the memory for the data plane's maps (")
                && message.contains("FLOWS4")
                && message.ends_with(
                    "the flow tables of 10000000 flows per family need 152 MiB each; lower \
                     maxflows (or maxtemplates, maxvirtuals, maxreals)"
                ),
            "{message}"
        );
    }

    #[test]
    fn differences_name_the_directives() {
        let held = Capacity::default();
        let wanted = Capacity {
            flows: held.flows * 2,
            ..held
        };
        assert_eq!(
            held.differences(&wanted),
            ["maxflows = 8388608 (the pinned maps hold 4194304)"]
        );
        assert!(held.differences(&held).is_empty());
    }
}
