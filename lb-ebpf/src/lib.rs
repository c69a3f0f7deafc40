//! What every XDP object of this crate shares: [`program_object!`]. Also lets `lb-userspace` name
//! this crate as a build dependency, so a change here re-runs its build script (which compiles
//! the programs for the BPF target with aya-build).
#![no_std]

/// The end of every program object (the balancer, and the programs in `src/bin/`): the panic
/// handler a `no_std` binary needs (the verifier refuses any program that could reach it) and the
/// licence the kernel reads.
#[macro_export]
macro_rules! program_object {
    () => {
        #[cfg(not(test))]
        #[panic_handler]
        fn panic(_info: &core::panic::PanicInfo) -> ! {
            loop {}
        }

        #[unsafe(link_section = "license")]
        #[unsafe(no_mangle)]
        static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
    };
}
