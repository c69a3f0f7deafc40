//! xdirectord: an XDP layer-4 load balancer with an ldirectord-compatible control plane.
pub mod objects;
