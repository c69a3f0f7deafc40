//! The data plane's capacities set at load time (`maxvirtuals`, `maxreals`, `maxtemplates`,
//! `maxflows`; `lb-userspace/src/backend/xdp/capacity.rs`): the maps get those sizes, and the
//! backend refuses a table that does not fit, naming the directive.

use aya::maps::IterableMap as _;
use xdirectord::{
    backend::xdp::{Capacity, ProgramClock},
    table::{DesiredTable, Protocol},
};
use xdirectord_tests::{
    harness::{Harness, private_netns},
    table::{key, service},
};

const REALS: [&str; 4] = ["10.0.1.1", "10.0.1.2", "10.0.1.3", "10.0.1.4"];

fn harness(capacity: Capacity) -> Harness {
    private_netns();
    let mut h = Harness::with_capacity(ProgramClock::Test, capacity);
    h.paths.neighbours(&REALS);
    h
}

fn sites(vips: usize, reals: usize) -> DesiredTable {
    let weighted: Vec<(&str, u32)> = REALS[..reals].iter().map(|r| (*r, 1)).collect();
    let mut t = DesiredTable::default();
    for i in 0..vips {
        t.services.insert(
            key(Protocol::Tcp, &format!("10.0.0.{}", 100 + i), 80),
            service("wrr", &weighted),
        );
    }
    t
}

/// Applies `table`; the backend's error, if any.
fn apply(h: &mut Harness, table: &DesiredTable) -> Option<String> {
    let held = h.dataplane.held().expect("held");
    let ops = xdirectord::table::diff::diff(&held, table);
    h.dataplane
        .execute(&ops, &mut h.paths)
        .err()
        .map(|e| e.to_string())
}

#[test]
fn the_maps_have_the_sizes_asked_for_and_a_table_too_big_is_refused() {
    let capacity = Capacity {
        flows: 1000,
        templates: 16,
        virtuals: 2,
        reals: 4,
    };
    let mut h = harness(capacity);
    let maps = &h.dataplane.maps;
    assert_eq!(maps.flows4.capacity(), 1000);
    assert_eq!(maps.persist4.map().info().unwrap().max_entries(), 16);
    assert_eq!(maps.vips6.map().info().unwrap().max_entries(), 2);
    assert_eq!(maps.rings.len(), 4, "two slots per virtual");
    assert_eq!(maps.reals.len(), 4);

    // Two virtuals of one real each fit; a third virtual does not.
    assert_eq!(apply(&mut h, &sites(2, 1)), None);
    let e = apply(&mut h, &sites(3, 1)).expect("refused");
    assert!(
        e.contains("3 virtual services, the XDP backend takes at most 2 (maxvirtuals)"),
        "{e}"
    );
    // Real ids 1 to 3 (0 is reserved): three reals fit, four do not.
    assert_eq!(apply(&mut h, &sites(1, 3)), None);
    let e = apply(&mut h, &sites(1, 4)).expect("refused");
    assert!(e.contains("more than 3 real servers (maxreals)"), "{e}");
}
