//! Keeps freed memory in the process instead of handing it back to the
//! kernel. glibc's defaults serve every block above 128 KiB-32 MiB with a
//! fresh `mmap` and return it with `munmap` on free, and trim the heap
//! whenever 128 KiB-64 MiB sit free at its top; a training step allocates
//! and frees hundreds of activation-sized tensors (tens of MiB each), so
//! every one was faulted in and zeroed page by page again: a quarter of the
//! profile of a `cpu`-preset step. With these settings freed blocks are
//! reused; the peak resident memory is the same, but it is not given back
//! while the process runs.

/// Applies the settings once (glibc on Linux only; a no-op elsewhere).
/// Skipped when the user tunes malloc through `GLIBC_TUNABLES` or the
/// `MALLOC_*_` variables.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let user_tuned = std::env::vars_os().any(|(k, _)| {
            let k = k.to_string_lossy();
            k == "GLIBC_TUNABLES" || (k.starts_with("MALLOC_") && k.ends_with('_'))
        });
        if user_tuned {
            return;
        }
        const GIB: libc::c_int = 1 << 30;
        // SAFETY: mallopt only changes allocator parameters; it is called
        // before the compute threads start allocating.
        unsafe {
            // Blocks up to 1 GiB come from the heap and are reused.
            libc::mallopt(libc::M_MMAP_THRESHOLD, GIB);
            // Free memory at the top of the heap is never trimmed (-1 is
            // SIZE_MAX to glibc). With a 1 GiB threshold, a loop that kept a
            // `paper` batch's teacher and student features while computing
            // its maps still freed more than that at once: the heap shrank
            // and grew back every batch, zeroing re-faulted pages was 30% of
            // its profile, and its student forward took 3.0-3.5 s instead of
            // 1.9-2.3 s. (`bench model` and `multiad test` never crossed
            // the threshold: the same page faults either way.)
            libc::mallopt(libc::M_TRIM_THRESHOLD, -1);
            // ...and the heap grows in steps of 256 MiB.
            libc::mallopt(libc::M_TOP_PAD, GIB / 4);
        }
    }
}
