#include "core/thread_pool.h"

#include <dlfcn.h>
#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <new>
#include <string>
#include <thread>
#include <vector>

namespace pycnnrnn {
namespace {

// set_num_threads' upper bound (Pool keeps one claim mark per part).
constexpr int kMaxThreads = 255;

// True while this thread executes part of a parallel region: a nested parallel_run then runs
// serially (std::mutex::try_lock by its owner would be undefined).
thread_local bool tl_inside_region = false;

class Pool {
 public:
  explicit Pool(int nthreads) { start(nthreads); }

  int size() const { return nthreads_; }

  void resize(int n) {
    std::lock_guard<std::mutex> region(region_mutex_);
    stop();
    start(n);
  }

  void run(int nt, const TaskFn& fn) {
    // Always nt parts, even when the pool has fewer threads (set_num_threads from another
    // Python thread between the caller's choice of nt and this call): a caller's partition,
    // and so its result, depends on nt alone. Parts past the pool's threads are taken by
    // whichever participant is free (below).
    if (nt > kMaxThreads) nt = kMaxThreads;
    std::unique_lock<std::mutex> region;
    if (nt > 1 && nthreads_ > 1 && !tl_inside_region)
      region = std::unique_lock<std::mutex>(region_mutex_, std::try_to_lock);
    if (nt <= 1 || !region.owns_lock()) {  // serial: same partition, same result
      int parts = nt <= 1 ? 1 : nt;
      for (int t = 0; t < parts; ++t) fn(t, parts);
      return;
    }
    dispatch(nt, fn, true);
  }

  // run() whose parts all run at once, each on its owner thread (parallel_team), or false.
  bool run_team(int nt, const TaskFn& fn) {
    if (nt > nthreads_ || tl_inside_region) return false;
    if (nt <= 1) {
      fn(0, 1);
      return true;
    }
    std::unique_lock<std::mutex> region(region_mutex_, std::try_to_lock);
    if (!region.owns_lock()) return false;
    dispatch(nt, fn, false);
    return true;
  }

  // Runs a region's nt parts on the pool (region_mutex_ held); `steal`: participants take over
  // parts whose owners are late (run()), or not (run_team()).
  void dispatch(int nt, const TaskFn& fn, bool steal) {
    // Part t belongs to thread t (the caller is thread 0), which keeps each part's data in
    // the same core's cache from one region to the next (the RNN's per-step regions rely on
    // it). A part whose owner has not started it after a short grace period is taken by
    // whichever participant is free: a worker woken late (from sleep, or sharing its core with
    // another pool's spinning threads) then no longer holds the region up. The partition is
    // fixed, so the result is the same whoever runs which part.
    const uint64_t gen = generation_.load(std::memory_order_relaxed) + 1;
    task_ = &fn;
    task_nt_.store(nt, std::memory_order_relaxed);
    steal_.store(steal, std::memory_order_relaxed);
    error_ = nullptr;
    pending_.store(nt, std::memory_order_relaxed);
    {
      std::lock_guard<std::mutex> lk(wake_mutex_);
      generation_.store(gen, std::memory_order_release);
    }
    wake_cv_.notify_all();
    participate(0, gen, nt);
    // wait for parts still running on workers
    for (int i = 0; pending_.load(std::memory_order_acquire) != 0; ++i) {
      if (i < kSpinIterations) { cpu_relax(); continue; }
      std::unique_lock<std::mutex> lk(done_mutex_);
      done_cv_.wait(lk, [&] { return pending_.load(std::memory_order_acquire) == 0; });
    }
    task_ = nullptr;
    if (error_) std::rethrow_exception(error_);
  }

  // After fork() only the forking thread exists in the child: forget the workers (their
  // std::thread objects are leaked on purpose; joining them is impossible) and start anew.
  void reset_after_fork() {
    int n = nthreads_;
    new (&region_mutex_) std::mutex();
    new (&wake_mutex_) std::mutex();
    new (&done_mutex_) std::mutex();
    new (&wake_cv_) std::condition_variable();
    new (&done_cv_) std::condition_variable();
    new (&error_mutex_) std::mutex();
    workers_ = new std::vector<std::thread>();  // old vector leaked deliberately
    stopping_.store(false);
    start(n);
  }

  std::mutex& region_mutex() { return region_mutex_; }

 private:
  void start(int n) {
    nthreads_ = n < 1 ? 1 : (n > kMaxThreads ? kMaxThreads : n);
    stopping_.store(false);
    if (workers_ == nullptr) workers_ = new std::vector<std::thread>();
    // The generation is read here, not in the new thread: a region started before the thread
    // runs must still be seen as new by it.
    uint64_t gen = generation_.load(std::memory_order_acquire);
    for (int tid = 1; tid < nthreads_; ++tid) workers_->emplace_back([this, tid, gen] { worker(tid, gen); });
  }

  void stop() {
    {
      std::lock_guard<std::mutex> lk(wake_mutex_);
      stopping_.store(true);
      generation_.fetch_add(1, std::memory_order_release);
    }
    wake_cv_.notify_all();
    for (auto& t : *workers_) t.join();
    workers_->clear();
  }

  // Claims part p for region gen: part_gen_[p] records the region that last claimed it. A
  // worker still holding an older region's generation may win the exchange but then sees
  // generation_ != gen and backs off; the part stays claimable (its mark is below gen).
  bool claim(int p, uint64_t gen) {
    uint64_t v = part_gen_[p].load(std::memory_order_acquire);
    while (v < gen)
      if (part_gen_[p].compare_exchange_weak(v, gen, std::memory_order_acq_rel, std::memory_order_acquire))
        return generation_.load(std::memory_order_acquire) == gen;
    return false;
  }

  void run_counted(int part, int nt) {
    run_part(part, nt);
    if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      std::lock_guard<std::mutex> lk(done_mutex_);
      done_cv_.notify_one();
    }
  }

  // Own part first; then (not in a team region), after the grace period, any part nobody has
  // started.
  void participate(int tid, uint64_t gen, int nt) {
    if (tid < nt && claim(tid, gen)) run_counted(tid, nt);
    if (!steal_.load(std::memory_order_relaxed)) return;
    for (int i = 0; i < kStealAfterIterations; ++i) {
      if (pending_.load(std::memory_order_acquire) == 0) return;
      cpu_relax();
    }
    for (int k = 1; k < nt; ++k) {
      const int p = (tid + k) % nt;
      if (claim(p, gen)) run_counted(p, nt);
    }
  }

  void run_part(int part, int nt) {
    tl_inside_region = true;
    try {
      (*task_)(part, nt);
      tl_inside_region = false;
    } catch (...) {
      tl_inside_region = false;
      std::lock_guard<std::mutex> lk(error_mutex_);
      if (!error_) error_ = std::current_exception();
    }
  }

  void worker(int tid, uint64_t seen) {
    for (;;) {
      // wait for a new generation: spin first, then sleep
      uint64_t g;
      for (int i = 0;; ++i) {
        g = generation_.load(std::memory_order_acquire);
        if (g != seen) break;
        if (i < kSpinIterations) { cpu_relax(); continue; }
        std::unique_lock<std::mutex> lk(wake_mutex_);
        wake_cv_.wait(lk, [&] { return generation_.load(std::memory_order_acquire) != seen; });
      }
      seen = g;
      if (stopping_.load()) return;
      participate(tid, g, task_nt_.load(std::memory_order_relaxed));
    }
  }

  int nthreads_ = 1;
  std::vector<std::thread>* workers_ = nullptr;
  std::mutex region_mutex_;  // one parallel region at a time
  std::mutex wake_mutex_, done_mutex_, error_mutex_;
  std::condition_variable wake_cv_, done_cv_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<uint64_t> part_gen_[kMaxThreads] = {};
  std::atomic<bool> stopping_{false};
  const TaskFn* task_ = nullptr;
  std::atomic<int> task_nt_{0};
  std::atomic<bool> steal_{true};
  std::exception_ptr error_;
};

Pool* g_pool = nullptr;
std::once_flag g_pool_once;

void atfork_prepare() {
  if (g_pool) g_pool->region_mutex().lock();
}
void atfork_parent() {
  if (g_pool) g_pool->region_mutex().unlock();
}
void atfork_child() {
  if (g_pool) g_pool->reset_after_fork();
}

Pool& pool() {
  std::call_once(g_pool_once, [] {
    g_pool = new Pool(default_num_threads());  // never destroyed: workers outlive static dtors
    pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
  });
  return *g_pool;
}

// ---- an OpenMP runtime already in the process (torch's) -------------------------------------
// Inside a torch program, torch's OpenMP threads spin for a while after each of its ops and
// our workers spin after each of ours: on a 2-core machine the two pools then take turns on
// a core (a 432-element torch op was measured at 660 us next to our kernels). Regions then
// run on that runtime's team instead (GOMP_parallel, exported by libgomp and Intel's
// libiomp5): one set of threads for both libraries, as hot for our kernels as for torch's.
struct OmpRuntime {
  void (*parallel)(void (*fn)(void*), void* data, unsigned num_threads, unsigned flags);
  int (*thread_num)();
  int (*num_threads)();
};
std::atomic<const OmpRuntime*> g_omp{nullptr};

struct OmpRegion {
  const OmpRuntime* rt;
  const TaskFn* fn;
  int nt;  // parts; 0: as many as the team has threads (parallel_team)
  std::mutex error_mutex;
  std::exception_ptr error;
};

// Runs on every team member: thread i takes parts i, i + team, ... (a team smaller than nt,
// e.g. nested inside another OpenMP region, still runs every part; the partition is fixed).
void omp_region_body(void* data) {
  auto* r = static_cast<OmpRegion*>(data);
  const int team = std::max(1, r->rt->num_threads());
  const int nt = r->nt > 0 ? r->nt : team;
  const bool was_inside = tl_inside_region;
  tl_inside_region = true;
  for (int part = r->rt->thread_num(); part < nt; part += team) {
    try {
      (*r->fn)(part, nt);
    } catch (...) {
      std::lock_guard<std::mutex> lk(r->error_mutex);
      if (!r->error) r->error = std::current_exception();
    }
  }
  tl_inside_region = was_inside;
}

}  // namespace

bool use_openmp_runtime(const std::string& library) {
  if (library.empty()) {
    g_omp.store(nullptr, std::memory_order_release);
    return true;
  }
  // RTLD_NOLOAD: only a runtime that is already loaded (the instance torch's threads belong to).
  void* h = dlopen(library.c_str(), RTLD_NOW | RTLD_NOLOAD);
  if (!h) return false;
  auto* rt = new OmpRuntime{  // never freed: a region in flight may still read the old one
      reinterpret_cast<void (*)(void (*)(void*), void*, unsigned, unsigned)>(dlsym(h, "GOMP_parallel")),
      reinterpret_cast<int (*)()>(dlsym(h, "omp_get_thread_num")),
      reinterpret_cast<int (*)()>(dlsym(h, "omp_get_num_threads"))};
  if (!rt->parallel || !rt->thread_num || !rt->num_threads) {
    delete rt;
    return false;
  }
  // libgomp's team does not survive fork() (a child's first region hangs, torch's own ops
  // included): a forked child goes back to the pool, which restarts itself after fork.
  static std::once_flag atfork_once;
  std::call_once(atfork_once, [] {
    pthread_atfork(nullptr, nullptr, [] { g_omp.store(nullptr, std::memory_order_relaxed); });
  });
  g_omp.store(rt, std::memory_order_release);
  return true;
}

bool using_openmp_runtime() { return g_omp.load(std::memory_order_acquire) != nullptr; }

int default_num_threads() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
  unsigned hc = std::thread::hardware_concurrency();
  return hc > 0 ? static_cast<int>(hc) : 1;
}

int get_num_threads() { return pool().size(); }

void set_num_threads(int n) {
  if (n < 1) n = 1;
  if (n != pool().size()) pool().resize(n);
}

void parallel_run(int nthreads, const TaskFn& fn) {
  const OmpRuntime* rt = g_omp.load(std::memory_order_acquire);
  if (rt && nthreads > 1 && !tl_inside_region) {
    OmpRegion r{rt, &fn, nthreads, {}, nullptr};  // every part; the team may be smaller
    const int team = std::min(nthreads, get_num_threads());
    if (team > 1) {
      rt->parallel(omp_region_body, &r, static_cast<unsigned>(team), 0);
      if (r.error) std::rethrow_exception(r.error);
      return;
    }
  }
  pool().run(nthreads, fn);
}

bool parallel_team(int nthreads, const TaskFn& fn) {
  const OmpRuntime* rt = g_omp.load(std::memory_order_acquire);
  if (!rt) return pool().run_team(nthreads, fn);
  if (tl_inside_region) return false;
  OmpRegion r{rt, &fn, 0, {}, nullptr};  // an OpenMP team's threads run at once: one part each
  rt->parallel(omp_region_body, &r, static_cast<unsigned>(std::max(1, std::min(nthreads, get_num_threads()))), 0);
  if (r.error) std::rethrow_exception(r.error);
  return true;
}

void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  if (grain < 1) grain = 1;
  int64_t max_by_grain = (n + grain - 1) / grain;
  int nt = get_num_threads();
  if (max_by_grain < nt) nt = static_cast<int>(max_by_grain);
  if (nt <= 1) {
    fn(0, n);
    return;
  }
  parallel_run(nt, [&](int tid, int nthr) {
    int64_t b, e;
    split_range(n, tid, nthr, 1, &b, &e);
    if (b < e) fn(b, e);
  });
}

}  // namespace pycnnrnn
