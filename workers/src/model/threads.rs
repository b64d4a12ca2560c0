//! How many threads a run's arithmetic uses (`training.threads`).
//!
//! A worker is one core by default: runs are the unit of parallelism, and N workers on N cores
//! are faster per core than one worker on N. A single long run that should finish sooner is
//! the exception, so a run may ask for several threads. They go to the matrix products (faer's
//! GEMMs, which carry most of the flops) and to a conv layer's independent sample chunks
//! (`conv::conv2d`); pooling, batch norm and the optimiser stay on the run's own thread,
//! which caps the gain for conv nets (`clorch bench`, P8).
//!
//! The work is split across threads by output blocks, never along a sum, so each output
//! element is summed in the same order whatever the thread count: a run's numbers are
//! bit-identical with 1 or 8 threads (`workers/tests/threads.rs` checks it end to end), which is
//! why `threads` is left out of the run id and a run may resume with a different count.
//!
//! The setting is per thread and scoped ([`with_threads`]), not a process global: tests that
//! train several networks at once in one process never see each other's choice.

use std::cell::Cell;

use faer::Par;

thread_local! {
    /// The parallelism of the GEMMs called on this thread.
    static GEMM: Cell<Par> = const { Cell::new(Par::Seq) };
}

/// The parallelism the GEMMs on this thread use now (sequential unless inside
/// [`with_threads`]).
pub fn gemm_par() -> Par {
    GEMM.with(Cell::get)
}

/// Runs `f` with its matrix products split across `threads` threads of a pool made for the
/// purpose (its threads flush denormals to zero, as the calling thread does), or directly on
/// this thread when `threads` is 1. The pool lives as long as `f`.
pub fn with_threads<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> Result<R, String> {
    if threads <= 1 {
        return Ok(f());
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("clorch-gemm-{i}"))
        .start_handler(|_| super::flush_denormals())
        .build()
        .map_err(|e| format!("cannot start {threads} threads for `training.threads`: {e}"))?;
    Ok(pool.install(|| {
        super::flush_denormals();
        let previous = GEMM.with(|g| g.replace(Par::rayon(threads)));
        let result = f();
        GEMM.with(|g| g.set(previous));
        result
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_setting_holds_inside_the_scope_only_and_only_on_its_thread() {
        assert_eq!(gemm_par(), Par::Seq);
        let inside = with_threads(3, || {
            let here = gemm_par();
            let elsewhere = std::thread::spawn(gemm_par).join().unwrap();
            (here, elsewhere, rayon::current_num_threads())
        })
        .unwrap();
        assert_eq!(inside, (Par::rayon(3), Par::Seq, 3));
        assert_eq!(gemm_par(), Par::Seq);
        assert_eq!(with_threads(1, gemm_par).unwrap(), Par::Seq);
    }
}
