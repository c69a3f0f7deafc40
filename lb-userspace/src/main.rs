//! The `xdirectord` binary: everything is in the library (`cli::main`).

fn main() {
    std::process::exit(xdirectord::cli::main());
}
