//! Empty on purpose: lets `lb-userspace` name this crate as a build dependency, so a change here
//! re-runs its build script (which compiles the programs for the BPF target with aya-build).
#![no_std]
