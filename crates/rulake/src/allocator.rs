//! The process allocator, chosen in the library so that every binary built
//! from it allocates alike: the `rulake` release binary, and the tests'
//! `rulake-under-test` that the container image and the multi-process tests
//! run. Memory figures measured on one then hold for the other.
//!
//! jemalloc (feature `jemalloc`, on by default): after a load, glibc malloc
//! kept 1.5–1.7× the cache's accounted bytes resident, in per-thread arenas
//! it does not give back; jemalloc with a background thread and a one-second
//! dirty decay settles at 1.2× at the same load speed (docs/BENCHMARKS.md,
//! "Memory"). Loads also purge freed pages as they go (see
//! `rulake_cache::memory::release_freed`): the decay alone left a load's
//! decoded buffers resident long enough to raise its peak by half.

#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read once at its start (the crate prefixes its
/// symbols with `_rjem_`): purge freed pages from a background thread,
/// dirty pages after one second, without an intermediate "muzzy" stage.
#[cfg(feature = "jemalloc")]
// SAFETY: jemalloc reads this symbol as a `const char *` to a NUL-terminated
// string; a reference to the first byte of a static byte string has exactly
// that layout and lives for the whole program.
#[allow(unsafe_code, non_upper_case_globals)]
#[export_name = "_rjem_malloc_conf"]
pub static malloc_conf: &u8 = &b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0"[0];

/// Purge every arena's freed pages now (`arena.<MALLCTL_ARENAS_ALL>.purge`).
#[cfg(feature = "jemalloc")]
fn purge_freed() {
    // SAFETY: a NUL-terminated mallctl name that takes no input and returns
    // nothing, so every pointer may be null. A failure only means nothing
    // was purged.
    #[allow(unsafe_code)]
    unsafe {
        tikv_jemalloc_sys::mallctl(
            c"arena.4096.purge".as_ptr(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            0,
        );
    }
}

/// Let loads hand freed pages back to the system as they go (a no-op
/// under glibc malloc, which has no such call for all its arenas).
pub(crate) fn install() {
    #[cfg(feature = "jemalloc")]
    rulake_cache::memory::set_release(purge_freed);
}
