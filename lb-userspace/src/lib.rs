//! xdirectord
