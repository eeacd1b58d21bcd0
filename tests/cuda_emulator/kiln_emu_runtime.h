/* kiln CUDA emulator runtime: fibers, the per-block scheduler, warp exchange, error exits.
 * Included once at the end of every emulated module (see kiln_emu.h). */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <ucontext.h>
#include <unistd.h>

namespace kiln_emu {
enum { READY, RUNNING, BARRIER, WARP, EXITED };
enum { MAX_THREADS = 1024 };

Fiber *cur = nullptr;
uint3 block_idx;
dim3 block_dim, grid_dim;

static Fiber fibers[MAX_THREADS];
static int nthreads = 0, live = 0;
static bool direct = false;  /* threads run one after another as plain calls (no barriers) */
static void (*tramp)(void **) = nullptr;
static void **targs = nullptr;
static char *stacks = nullptr;  /* MAX_THREADS stacks, each below a guard page */
static size_t stack_stride = 0;
static void *sched_sp = nullptr;
static sigjmp_buf exit_jmp;
static char errbuf[4096];
static void *fault_addr = nullptr;
static unsigned char *dyn_shared = nullptr;
static size_t dyn_shared_bytes = 0;
static int order = 0;  /* 0: threads in index order each pass, 1: reverse order */

struct Warp {
  unsigned arrived, mask;
  int kind, line;
  unsigned long long val[32], res[32];
  int arg[32];
};
static Warp warps[MAX_THREADS / 32];

extern "C" char __start_kiln_emu_shared[] __attribute__((weak));
extern "C" char __stop_kiln_emu_shared[] __attribute__((weak));

[[noreturn]] void fail(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = snprintf(errbuf, sizeof errbuf, "block (%u,%u,%u)", block_idx.x, block_idx.y, block_idx.z);
  if (cur && !direct) n += snprintf(errbuf + n, sizeof errbuf - n, " thread (%u,%u,%u)", cur->tid.x, cur->tid.y, cur->tid.z);
  else if (cur) n += snprintf(errbuf + n, sizeof errbuf - n, " thread (%u,%u,%u) [direct]", cur->tid.x, cur->tid.y, cur->tid.z);
  n += snprintf(errbuf + n, sizeof errbuf - n, ": ");
  vsnprintf(errbuf + n, sizeof errbuf - n, fmt, ap);
  va_end(ap);
  siglongjmp(exit_jmp, 1);
}

/* ---- context switch: callee-saved registers on the stack, then swap stack pointers ---- */
#if defined(__x86_64__) && !defined(KILN_EMU_UCONTEXT)
extern "C" void kiln_emu_switch(void **save_sp, void *load_sp);
asm(".text\n"
    ".p2align 4\n"
    ".type kiln_emu_switch, @function\n"
    "kiln_emu_switch:\n"
    "  pushq %rbp\n  pushq %rbx\n  pushq %r12\n  pushq %r13\n  pushq %r14\n  pushq %r15\n"
    "  subq $8, %rsp\n  stmxcsr (%rsp)\n  fnstcw 4(%rsp)\n"
    "  movq %rsp, (%rdi)\n  movq %rsi, %rsp\n"
    "  ldmxcsr (%rsp)\n  fldcw 4(%rsp)\n  addq $8, %rsp\n"
    "  popq %r15\n  popq %r14\n  popq %r13\n  popq %r12\n  popq %rbx\n  popq %rbp\n"
    "  ret\n"
    ".size kiln_emu_switch, .-kiln_emu_switch\n");
static void to_fiber(Fiber *f) { kiln_emu_switch(&sched_sp, f->sp); }
static void to_scheduler() { kiln_emu_switch(&cur->sp, sched_sp); }
[[noreturn]] static void fiber_entry();
static void fiber_init(Fiber *f, char *top) {
  void **sp = (void **)((uintptr_t)top & ~(uintptr_t)15);
  *--sp = nullptr;                     /* fiber_entry's return address slot: it never returns */
  *--sp = (void *)&fiber_entry;        /* where the first switch "returns" to */
  for (int i = 0; i < 6; ++i) *--sp = nullptr;  /* rbp rbx r12-r15 */
  unsigned ctrl[2];
  asm volatile("stmxcsr %0\n fnstcw %1" : "=m"(ctrl[0]), "=m"(ctrl[1]));
  *--sp = nullptr;
  memcpy(sp, ctrl, 8);
  f->sp = sp;
}
#else
static ucontext_t sched_ctx, fiber_ctx[MAX_THREADS];
static void to_fiber(Fiber *f) { swapcontext(&sched_ctx, (ucontext_t *)f->uctx); }
static void to_scheduler() { swapcontext((ucontext_t *)cur->uctx, &sched_ctx); }
[[noreturn]] static void fiber_entry();
static void fiber_init(Fiber *f, char *top) {
  ucontext_t *c = &fiber_ctx[f - fibers];
  getcontext(c);
  c->uc_stack.ss_sp = top - (stack_stride - (size_t)sysconf(_SC_PAGESIZE));
  c->uc_stack.ss_size = stack_stride - (size_t)sysconf(_SC_PAGESIZE);
  c->uc_link = nullptr;
  makecontext(c, (void (*)())fiber_entry, 0);
  f->uctx = c;
}
#endif

[[noreturn]] static void fiber_entry() {
  tramp(targs);
  cur->state = EXITED;
  --live;
  to_scheduler();
  __builtin_unreachable();
}

static const char *state_name(int s) {
  switch (s) {
    case READY: return "ready"; case RUNNING: return "running"; case BARRIER: return "__syncthreads";
    case WARP: return "a warp intrinsic"; default: return "exited";
  }
}

void syncthreads(int line) {
  if (direct) fail("__syncthreads() in a function the emulator runs without fibers (emulator bug)");
  cur->state = BARRIER;
  cur->site = line;
  to_scheduler();
}

void *dynamic_shared() { return dyn_shared; }

static unsigned existing_lanes(int w) {
  const int first = w * 32, n = nthreads - first;
  return n >= 32 ? 0xffffffffu : (1u << n) - 1u;
}

/* one warp-synchronous operation: every lane of mask (that exists) must arrive with the same
 * kind of operation; the last to arrive computes all results and resumes the others */
unsigned long long warp_op(int kind, unsigned mask, unsigned long long bits, int arg, int width, int line) {
  if (direct) fail("warp intrinsic in a function the emulator runs without fibers (emulator bug)");
  Fiber *f = cur;
  Warp &w = warps[f->warp];
  const unsigned m = mask & existing_lanes(f->warp);
  if (!(m >> f->lane & 1u)) fail("warp intrinsic (line %d) called by lane %d, which is not in its mask 0x%08x", line, f->lane, mask);
  if (width <= 0 || width > 32 || (width & (width - 1))) fail("warp intrinsic (line %d): width %d is not a power of two <= 32", line, width);
  if (w.arrived == 0) {
    w.mask = m; w.kind = kind; w.line = line;
  } else if (w.mask != m || w.kind != kind) {
    fail("divergent warp intrinsics: lane %d calls kind %d with mask 0x%08x (line %d) while other lanes wait in kind %d "
         "with mask 0x%08x (line %d)", f->lane, kind, m, line, w.kind, w.mask, w.line);
  }
  w.val[f->lane] = bits;
  const int seg = f->lane & ~(width - 1), in = f->lane & (width - 1);
  int src = f->lane;
  switch (kind) {
    case SHFL_IDX: src = seg + (arg & (width - 1)); break;
    case SHFL_UP: src = in - arg >= 0 ? f->lane - arg : f->lane; break;
    case SHFL_DOWN: src = in + arg < width ? f->lane + arg : f->lane; break;
    case SHFL_XOR: src = f->lane ^ arg; if (src < seg || src >= seg + width) src = f->lane; break;
    default: break;
  }
  w.arg[f->lane] = src;
  w.arrived |= 1u << f->lane;
  if (w.arrived != m) {
    f->state = WARP;
    to_scheduler();
    return w.res[f->lane];
  }
  /* last lane: compute every lane's result, resume the others */
  unsigned ballot = 0;
  for (int l = 0; l < 32; ++l) if ((m >> l & 1u) && w.val[l]) ballot |= 1u << l;
  for (int l = 0; l < 32; ++l) {
    if (!(m >> l & 1u)) continue;
    switch (kind) {
      case BALLOT: w.res[l] = ballot; break;
      case ANY: w.res[l] = ballot != 0; break;
      case ALL: w.res[l] = ballot == m; break;
      case SYNCWARP: w.res[l] = 0; break;
      default: {
        const int s = w.arg[l];
        /* reading a lane outside the mask is undefined in CUDA: all-ones bits (NaN, -1) */
        w.res[l] = (s >= 0 && s < 32 && (m >> s & 1u)) ? w.val[s] : ~0ull;
      }
    }
    if (l != f->lane) fibers[f->warp * 32 + l].state = READY;
  }
  w.arrived = 0;
  return w.res[f->lane];
}

static void deadlock() {
  int n = snprintf(errbuf, sizeof errbuf, "block (%u,%u,%u): deadlock: no thread can run;", block_idx.x, block_idx.y, block_idx.z);
  int shown = 0;
  for (int i = 0; i < nthreads && shown < 12; ++i) {
    const Fiber &t = fibers[i];
    if (t.state == EXITED) continue;
    n += snprintf(errbuf + n, sizeof errbuf - n, " thread %d waits at %s (line %d);", i, state_name(t.state),
                  t.state == BARRIER ? t.site : warps[t.warp].line);
    ++shown;
    if (n >= (int)sizeof errbuf - 100) break;
  }
  int exited = 0;
  for (int i = 0; i < nthreads; ++i) exited += fibers[i].state == EXITED;
  snprintf(errbuf + n, sizeof errbuf - n, " %d of %d threads exited", exited, nthreads);
  siglongjmp(exit_jmp, 1);
}

static void run_block() {
  if (__start_kiln_emu_shared != __stop_kiln_emu_shared)  /* shared memory starts as garbage */
    memset(__start_kiln_emu_shared, 0xa5, (size_t)(__stop_kiln_emu_shared - __start_kiln_emu_shared));
  if (dyn_shared_bytes) memset(dyn_shared, 0xa5, dyn_shared_bytes);
  if (direct) {
    for (int k = 0; k < nthreads; ++k) {
      cur = &fibers[order ? nthreads - 1 - k : k];
      tramp(targs);
    }
    cur = nullptr;
    return;
  }
  for (int i = 0; i < nthreads; ++i) {
    fibers[i].state = READY;
    fiber_init(&fibers[i], stacks + (size_t)(i + 1) * stack_stride);
  }
  for (int w = 0; w < (nthreads + 31) / 32; ++w) warps[w].arrived = 0;
  live = nthreads;
  while (live > 0) {
    bool ran = false;
    for (int k = 0; k < nthreads; ++k) {
      const int i = order ? nthreads - 1 - k : k;
      Fiber *f = &fibers[i];
      if (f->state != READY) continue;
      f->state = RUNNING;
      cur = f;
      to_fiber(f);
      cur = nullptr;
      ran = true;
    }
    if (ran || live == 0) continue;
    /* nobody is ready: a barrier every live thread waits at opens, anything else is a deadlock */
    int site = -1;
    bool all = true;
    for (int i = 0; i < nthreads && all; ++i) {
      const Fiber &t = fibers[i];
      if (t.state == EXITED) continue;
      if (t.state != BARRIER) { all = false; break; }
      if (site >= 0 && t.site != site) {
        snprintf(errbuf, sizeof errbuf, "block (%u,%u,%u): divergent __syncthreads(): thread %d waits at line %d, "
                 "another thread at line %d", block_idx.x, block_idx.y, block_idx.z, i, t.site, site);
        siglongjmp(exit_jmp, 1);
      }
      site = t.site;
    }
    if (!all) deadlock();
    for (int i = 0; i < nthreads; ++i) if (fibers[i].state == BARRIER) fibers[i].state = READY;
  }
}

static void on_signal(int sig, siginfo_t *info, void *) {
  fault_addr = info ? info->si_addr : nullptr;
  const char *what = sig == SIGSEGV ? "invalid memory access (SIGSEGV)" : sig == SIGBUS ? "bus error (SIGBUS)"
                     : sig == SIGFPE ? "arithmetic trap (SIGFPE: integer division by zero or overflow)"
                     : sig == SIGILL ? "illegal instruction (SIGILL: an undefined-behaviour check trapped)"
                     : "time limit exceeded (SIGALRM): an endless loop?";
  int n = snprintf(errbuf, sizeof errbuf, "block (%u,%u,%u)", block_idx.x, block_idx.y, block_idx.z);
  if (cur) n += snprintf(errbuf + n, sizeof errbuf - n, " thread (%u,%u,%u)", cur->tid.x, cur->tid.y, cur->tid.z);
  snprintf(errbuf + n, sizeof errbuf - n, ": %s at address %p", what, sig == SIGALRM ? nullptr : fault_addr);
  siglongjmp(exit_jmp, 1);
}
}  /* namespace kiln_emu */

/* Runs a grid. Returns 0, or 1 with the message in err (and the faulting address in *addr). */
/* ``stack_area``: MAX_THREADS fiber stacks of ``stride`` bytes, each starting with a guard page
 * (owned by device.py and shared by every module, so each library maps no stacks of its own). */
extern "C" int kiln_emu_launch(void (*fn)(void **), const unsigned *grid, const unsigned *block, void **args,
                               int direct, unsigned long long shared_bytes, int order, double seconds,
                               char *err, int errlen, void **addr, char *stack_area, unsigned long long stride) {
  using namespace kiln_emu;
  const unsigned long long n = (unsigned long long)block[0] * block[1] * block[2];
  if (n == 0 || n > MAX_THREADS || block[2] > 64 || grid[0] == 0 || grid[1] == 0 || grid[2] == 0 ||
      grid[1] > 65535 || grid[2] > 65535) {
    snprintf(err, errlen, "invalid launch configuration: grid (%u,%u,%u), block (%u,%u,%u)", grid[0], grid[1], grid[2],
             block[0], block[1], block[2]);
    return 1;
  }
  stacks = stack_area;
  stack_stride = (size_t)stride;
  kiln_emu::direct = direct != 0;
  kiln_emu::order = order;
  tramp = fn;
  targs = args;
  nthreads = (int)n;
  grid_dim = dim3(grid[0], grid[1], grid[2]);
  block_dim = dim3(block[0], block[1], block[2]);
  for (int i = 0; i < nthreads; ++i) {
    Fiber &f = fibers[i];
    f.tid.x = i % block[0];
    f.tid.y = (i / block[0]) % block[1];
    f.tid.z = i / (block[0] * block[1]);
    f.linear = i; f.lane = i & 31; f.warp = i >> 5;
  }
  if (shared_bytes != dyn_shared_bytes) {
    free(dyn_shared);
    dyn_shared = shared_bytes ? (unsigned char *)aligned_alloc(256, (shared_bytes + 255) & ~255ull) : nullptr;
    dyn_shared_bytes = shared_bytes;
  }
  static char altstack[1 << 16];
  stack_t ss = {}, old_ss;
  ss.ss_sp = altstack;
  ss.ss_size = sizeof altstack;
  sigaltstack(&ss, &old_ss);
  struct sigaction sa = {}, old[5];
  const int sigs[5] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGALRM};
  sa.sa_sigaction = on_signal;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigemptyset(&sa.sa_mask);
  for (int k = 0; k < 5; ++k) sigaction(sigs[k], &sa, &old[k]);
  struct itimerval timer = {}, no_timer = {};
  timer.it_value.tv_sec = (long)seconds;
  timer.it_value.tv_usec = (long)((seconds - (long)seconds) * 1e6);
  if (seconds > 0) setitimer(ITIMER_REAL, &timer, nullptr);
  int rc = 0;
  errbuf[0] = 0;
  fault_addr = nullptr;
  if (sigsetjmp(exit_jmp, 1) == 0) {
    for (unsigned z = 0; z < grid[2]; ++z)
      for (unsigned y = 0; y < grid[1]; ++y)
        for (unsigned x = 0; x < grid[0]; ++x) {
          block_idx.x = x; block_idx.y = y; block_idx.z = z;
          run_block();
        }
  } else {
    rc = 1;
  }
  if (seconds > 0) setitimer(ITIMER_REAL, &no_timer, nullptr);
  for (int k = 0; k < 5; ++k) sigaction(sigs[k], &old[k], nullptr);
  sigaltstack(&old_ss, nullptr);
  cur = nullptr;
  if (rc) {
    snprintf(err, errlen, "%s", errbuf);
    if (addr) *addr = fault_addr;
  }
  return rc;
}
