//! A rayon pool that runs one forward pass at a time without allocating.
//!
//! Entering a rayon pool from outside (`install`, `join`) pushes a job onto rayon's global
//! injector, which allocates a block every few dozen pushes. A forward pass enters its pool
//! once per parallel layer, so it would allocate now and then. Instead, one worker of the pool
//! runs `serve` for the pool's lifetime: callers hand it a closure through a mutex and wait;
//! the closure's parallel loops start from inside the pool, where rayon uses the worker's own
//! deque and never allocates in steady state.

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// A lifetime-erased pointer to the caller's closure.
struct Job(*mut (dyn FnMut() + Send + 'static));

// SAFETY: the pointee is `Send`, and only the serving worker dereferences it while the
// submitting caller is blocked waiting for it (see `Team::run`).
unsafe impl Send for Job {}

#[derive(Default)]
struct State {
    job: Option<Job>,
    finished: bool,
    panic: Option<Box<dyn std::any::Any + Send>>,
    shutdown: bool,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    done: Condvar,
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A pool of `threads` rayon workers, one of which serves submitted closures.
pub struct Team {
    pool: rayon::ThreadPool,
    shared: Arc<Shared>,
    /// Serialises callers: one closure at a time.
    submit: Mutex<()>,
}

impl Team {
    pub fn new(threads: usize) -> Team {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("shortcut-{i}"))
            .build()
            .expect("spawn worker threads");
        let shared = Arc::new(Shared::default());
        let served = Arc::clone(&shared);
        pool.spawn(move || serve(&served));
        Team { pool, shared, submit: Mutex::new(()) }
    }

    /// Whether the current thread is one of this team's workers.
    pub fn is_inside(&self) -> bool {
        self.pool.current_thread_index().is_some()
    }

    /// The pool, for callers already inside it or that accept rayon's injection costs.
    pub fn pool(&self) -> &rayon::ThreadPool {
        &self.pool
    }

    /// Runs `f` on a worker of the pool and returns its result; a panic in `f` resumes here.
    pub fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        if self.is_inside() {
            return f();
        }
        let _one_at_a_time = self.submit.lock().unwrap_or_else(|e| e.into_inner());
        let mut f = Some(f);
        let mut result = None;
        let mut call = || result = f.take().map(|f| f());
        let call: &mut (dyn FnMut() + Send) = &mut call;
        // SAFETY: only the lifetime is erased. The worker dereferences the pointer before it
        // sets `finished`, and we do not return (or unwind) before seeing `finished`, so the
        // closure and everything it borrows outlive every use.
        let job = Job(unsafe {
            std::mem::transmute::<*mut (dyn FnMut() + Send + '_), *mut (dyn FnMut() + Send + 'static)>(
                call,
            )
        });
        let mut state = lock(&self.shared.state);
        state.job = Some(job);
        state.finished = false;
        self.shared.wake.notify_all();
        while !state.finished {
            state = self.shared.done.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        if let Some(p) = state.panic.take() {
            drop(state);
            resume_unwind(p);
        }
        drop(state);
        result.expect("the job ran")
    }
}

impl Drop for Team {
    fn drop(&mut self) {
        lock(&self.shared.state).shutdown = true;
        self.shared.wake.notify_all();
    }
}

/// The serving loop: waits for jobs until shutdown.
fn serve(shared: &Shared) {
    loop {
        let job = {
            let mut state = lock(&shared.state);
            loop {
                if state.shutdown {
                    return;
                }
                if let Some(job) = state.job.take() {
                    break job;
                }
                state = shared.wake.wait(state).unwrap_or_else(|e| e.into_inner());
            }
        };
        // SAFETY: the submitter is blocked in `Team::run` until `finished` is set below, so the
        // closure is alive and not used by anyone else.
        let outcome = catch_unwind(AssertUnwindSafe(|| unsafe { (*job.0)() }));
        let mut state = lock(&shared.state);
        state.panic = outcome.err();
        state.finished = true;
        shared.done.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rayon::prelude::*;

    #[test]
    fn runs_parallel_work_and_returns_results() {
        let team = Team::new(3);
        let data: Vec<u64> = (0..10_000).collect();
        for _ in 0..50 {
            let sum = team.run(|| data.par_iter().sum::<u64>());
            assert_eq!(sum, 10_000 * 9_999 / 2);
        }
    }

    #[test]
    fn panics_reach_the_caller_and_the_team_survives() {
        let team = Team::new(2);
        let r = catch_unwind(AssertUnwindSafe(|| team.run(|| panic!("boom"))));
        assert!(r.is_err());
        assert_eq!(team.run(|| 7), 7);
    }

    #[test]
    fn callers_on_several_threads_are_serialised() {
        let team = Team::new(2);
        std::thread::scope(|s| {
            for t in 0..4u64 {
                let team = &team;
                s.spawn(move || {
                    for i in 0..20u64 {
                        assert_eq!(
                            team.run(|| (0..100u64)
                                .into_par_iter()
                                .map(|x| x * t + i)
                                .sum::<u64>()),
                            4950 * t + 100 * i
                        );
                    }
                });
            }
        });
    }
}
