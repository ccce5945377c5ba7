//! Runtime settings every binary, test and bench applies first.

/// Runtime defaults for every binary, test and bench, called first thing:
///
/// * fixes the number of compute threads once, from `RAYON_NUM_THREADS` or
///   the machine's available parallelism. Without it candle 0.11 works the
///   count out again on every operation by reading /proc/cpuinfo, which cost
///   15% of a training step in a profile on this machine;
/// * keeps freed memory for reuse (`multiad_nn::allocator`): page faults on
///   fresh activations were a quarter of a training step's profile.
pub fn set_default_threads() {
    crate::allocator::keep_freed_memory();
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        let n = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    }
}
