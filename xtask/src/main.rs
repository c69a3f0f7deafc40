//! `cargo xtask`: set-up, build, run, test and benchmark xdirectord. See README.md.
//!
//! Every command that builds first runs `setup`, which installs what a fresh machine lacks.

use anyhow::{Result, bail};
use std::process::Command;
use xtask::{bench, cargo, demo, lab, package, run, setup, vm, workspace_root, xdirectord_binary};

const USAGE: &str = "\
usage: cargo xtask <command>

  setup             install what is missing: nightly rust-src, bpf-linker, Debian packages, bpffs
  build             build everything (the XDP programs and the xdirectord binary)
  run [-- ARGS]     build, then run xdirectord with ARGS
  test              formatting, clippy and every test (as CI runs them; needs root)
  package           the Debian package (release build): target/package/xdirectord_<version>_<arch>.deb
  bench [--cores]   the benchmarks, side by side with their yardsticks; figures in target/bench/
                    (--cores: the data plane also on 1, 2, 4, … CPUs at once, with its scaling)
  demo              build, then show xdirectord at work in the lab: balancing, failover, fallback,
                    recovery (needs root; takes the lab down at the end)
  lab up|down|status
                    a network-namespace LVS direct-routing site on this machine: a client, the
                    director, three real web servers and a switch (docs/lab.md; needs root)
  vm build|shell    the IPVS test guest (docs/ipvs-vm.md): Debian's 6.1 kernel under QEMU on this
                    machine's own files; build (and cache) it, or boot it with a shell here
";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(command) = args.first() else {
        print!("{USAGE}");
        return Ok(());
    };
    let rest = &args[1..];
    std::env::set_current_dir(workspace_root())?;
    match command.as_str() {
        "setup" => setup::setup(),
        "build" => {
            setup::setup()?;
            build()
        }
        "run" => {
            setup::setup()?;
            build()?;
            let args = rest.strip_prefix(&["--".to_owned()]).unwrap_or(rest);
            let status = Command::new(xdirectord_binary()).args(args).status()?;
            std::process::exit(status.code().unwrap_or(1));
        }
        "test" => {
            setup::setup()?;
            test()
        }
        "package" => {
            setup::setup()?;
            package::package()
        }
        "bench" => {
            let cores = match rest {
                [] => false,
                [flag] if flag == "--cores" => true,
                _ => bail!("unknown arguments to bench: {rest:?}\n{USAGE}"),
            };
            setup::setup()?;
            bench::dataplane(cores)?;
            xtask::bench_checks::bench_checks()
        }
        "demo" => {
            setup::setup()?;
            demo::demo(&std::env::current_exe()?)
        }
        "lab" => lab_command(rest),
        "vm" => vm_command(rest),
        // Not in USAGE: `lab up` runs the lab's web servers as this binary's children.
        "lab-httpd" => lab::httpd::main(rest),
        // Not in USAGE either: end-to-end tests run it on reals that serve UDP.
        "lab-udp" => lab::udp::main(rest),
        "-h" | "--help" | "help" => {
            print!("{USAGE}");
            Ok(())
        }
        other => bail!("unknown command {other:?}\n{USAGE}"),
    }
}

fn lab_command(args: &[String]) -> Result<()> {
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["up"] => {
            // The lab needs the xdp-pass program, hence bpf-linker and the rest of set-up.
            setup::setup()?;
            lab::up(&std::env::current_exe()?)
        }
        ["down"] => lab::down(),
        ["status"] => lab::print_status(),
        _ => bail!("usage: cargo xtask lab up|down|status"),
    }
}

fn vm_command(args: &[String]) -> Result<()> {
    let usage = "usage: cargo xtask vm build|shell";
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["build"] => {
            setup::debian_packages(setup::DEBIAN_PACKAGES)?;
            vm::build()
        }
        ["shell"] => {
            setup::debian_packages(setup::DEBIAN_PACKAGES)?;
            vm::shell()
        }
        _ => bail!(usage),
    }
}

fn build() -> Result<()> {
    run(cargo().args(["build", "--all-targets"]))
}

fn test() -> Result<()> {
    println!("test: formatting");
    run(cargo().args(["fmt", "--all", "--check"]))?;
    println!("test: clippy (user space)");
    run(cargo().args(["clippy", "--all-targets", "--", "-D", "warnings"]))?;
    println!("test: clippy (XDP programs)");
    run(cargo().args([
        "+nightly",
        "clippy",
        "--package",
        "lb-ebpf",
        "--all-targets",
        "--",
        "-D",
        "warnings",
        "-C",
        "panic=abort",
        "-Zpanic_abort_tests",
    ]))?;
    println!("test: cargo test");
    run(cargo().args(["test", "--no-fail-fast"]))
}
