// thread_pool.h — a small persistent pool of our own (no OpenMP; see DESIGN.md).
//
// parallel_run(nt, fn) calls fn(tid, nt) for tid = 0..nt-1, the calling thread taking tid 0,
// and returns when all are done. Work is partitioned statically by tid, so a result depends
// only on nt, never on which OS thread ran which part: results are bit-identical from call to
// call and across Python threads. All nt parts run even when the pool has fewer threads (the
// count was lowered by set_num_threads after the caller chose nt).
//
// Only one parallel region runs on the pool at a time. A call that finds the pool busy (a
// second Python thread, or a nested call from inside a task) runs all nt parts itself, in
// order: same partition, same result, no deadlock.
#pragma once
#include <cstdint>
#include <functional>
#include <string>

namespace pycnnrnn {

// Threads the pool uses by default: the process's CPU affinity count.
int default_num_threads();
int get_num_threads();
// n >= 1. Safe while other threads run kernels (waits for the region in flight).
void set_num_threads(int n);

using TaskFn = std::function<void(int tid, int nthreads)>;
void parallel_run(int nthreads, const TaskFn& fn);

// parallel_team(nt, fn): fn(tid, n) for tid = 0..n-1, every part on its own thread and all of
// them at the same time (the caller takes part 0; no part is taken over by another thread), so
// parts may wait for each other, e.g. at a barrier between the steps of a recurrence
// (rnn.cpp). n is nt on the pool; on an OpenMP runtime (use_openmp_runtime) it is the team the
// runtime gave, at most nt. Returns false without calling fn where that cannot be promised: nt
// above the pool's threads, the pool busy (another Python thread's region) or a nested call;
// the caller then runs ordinary regions. A part that fails must release the parts waiting for
// it before it throws.
bool parallel_team(int nthreads, const TaskFn& fn);

// Pauses a waiting thread spins before it sleeps (the pool) or yields (rnn.cpp's StepParts):
// short regions then cost a cache-line handoff, not a futex wake.
constexpr int kSpinIterations = 20000;
// Pauses a participant that has finished its own part waits before it takes parts whose owners
// have not started (tens of microseconds).
constexpr int kStealAfterIterations = 1000;

// A pause for spin-wait loops.
inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// Run parallel regions on an OpenMP runtime already loaded in the process (the shared library
// at `library`, e.g. torch's libgomp; found with RTLD_NOLOAD, never loaded here) instead of the
// pool: part t on team thread t, same partition, same results. "" goes back to the pool.
// Returns false (and changes nothing) when the library is not loaded or lacks GOMP_parallel.
bool use_openmp_runtime(const std::string& library);
bool using_openmp_runtime();

// Static split of [0, n) into nthreads nearly equal ranges, aligned to `align` items:
// part tid gets [begin, end). Ranges may be empty.
inline void split_range(int64_t n, int tid, int nthreads, int64_t align, int64_t* begin, int64_t* end) {
  int64_t blocks = (n + align - 1) / align;
  int64_t b0 = blocks * tid / nthreads, b1 = blocks * (tid + 1) / nthreads;
  *begin = b0 * align < n ? b0 * align : n;
  *end = b1 * align < n ? b1 * align : n;
}

// parallel_for(n, grain, fn): fn(begin, end) over a static split of [0, n) using at most
// get_num_threads() threads and at least `grain` items per thread.
void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

}  // namespace pycnnrnn
