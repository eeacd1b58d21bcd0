/* kiln CUDA emulator: lets the CUDA C that compiler/codegen/cuda*.py renders compile with the
 * host C++ compiler and run on the CPU (test tooling only, see device.py).
 *
 * Every emulated thread of a block is a cooperative fiber with its own stack; fibers run
 * round-robin and only give up the CPU at __syncthreads() and warp intrinsics, so the
 * emulator is deterministic. Blocks of a grid run one after another, which is why
 * __shared__ can be function-static storage (put in one section so that it is poisoned at
 * the start of every block). Errors (deadlock, divergent barriers, faults, time-outs) end
 * the launch through siglongjmp and come back to Python as a message.
 *
 * One translation unit per module: this header, the rendered source, the trampolines
 * device.py generates, then KILN_EMU_RUNTIME (defined below, after the source). */
#ifndef KILN_EMU_H
#define KILN_EMU_H
#define KILN_CUDA_EMULATE 1

#include <math.h> /* libstdc++'s math.h puts the float overloads (sin(float) -> float) in :: as CUDA does */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <type_traits>
#include <utility>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __restrict__ __restrict
#define __align__(n) __attribute__((aligned(n)))
/* per block: blocks run one at a time; the section lets the runtime poison it per block */
#define __shared__ static __attribute__((section("kiln_emu_shared"), aligned(16)))
#define __constant__ static

struct uint3 { unsigned int x, y, z; };
struct dim3 {
  unsigned int x, y, z;
  dim3(unsigned int a = 1, unsigned int b = 1, unsigned int c = 1) : x(a), y(b), z(c) {}
};

namespace kiln_emu {
struct Fiber {
  void *sp;          /* saved stack pointer (x86-64 switch) */
  void *uctx;        /* ucontext_t* for the portable switch */
  uint3 tid;
  int linear, lane, warp;
  int state;         /* READY, RUNNING, BARRIER, WARP, EXITED */
  int site;          /* source line of the barrier it waits at */
};
extern Fiber *cur;
extern uint3 block_idx;
extern dim3 block_dim, grid_dim;
[[noreturn]] void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void syncthreads(int line);
unsigned long long warp_op(int kind, unsigned mask, unsigned long long bits, int arg, int width, int line);
void *dynamic_shared();
enum { SHFL_IDX, SHFL_UP, SHFL_DOWN, SHFL_XOR, BALLOT, ANY, ALL, SYNCWARP };

template <typename T> inline unsigned long long to_bits(T v) {
  unsigned long long b = 0; memcpy(&b, &v, sizeof(T)); return b; }
template <typename T> inline T from_bits(unsigned long long b) {
  T v; memcpy(&v, &b, sizeof(T)); return v; }

/* float16 <-> float as PTX cvt.f32.f16 / cvt.rn.f16.f32 (round to nearest even) */
inline float h2f(unsigned short h) {
  const unsigned s = (h >> 15) & 1u, e = (h >> 10) & 31u, m = h & 1023u;
  if (e == 0) { const float v = ldexpf((float)m, -24); return s ? -v : v; }
  unsigned bits = e == 31 ? (s << 31) | 0x7f800000u | (m << 13) | (m ? 0x400000u : 0u)
                          : (s << 31) | ((e + 112u) << 23) | (m << 13);
  float f; memcpy(&f, &bits, 4); return f;
}
inline unsigned short f2h(float f) {
  unsigned x; memcpy(&x, &f, 4);
  const unsigned s = (x >> 16) & 0x8000u, ax = x & 0x7fffffffu;
  if (ax > 0x7f800000u) return (unsigned short)(s | 0x7e00u | ((ax >> 13) & 0x1ffu));  /* NaN */
  if (ax >= 0x477ff000u) return (unsigned short)(s | 0x7c00u);  /* rounds to infinity */
  if (ax < 0x38800000u) {  /* a float16 subnormal (or zero): round |f| * 2**24 to an integer */
    float v; memcpy(&v, &ax, 4);
    return (unsigned short)(s | (unsigned)nearbyintf(v * 16777216.0f));
  }
  unsigned h = ((ax >> 23) - 112u) << 10 | ((ax & 0x7fffffu) >> 13);
  const unsigned rest = ax & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;
  return (unsigned short)(s | h);
}
} /* namespace kiln_emu */

/* per-thread and per-block built-in variables (read-only, as in CUDA) */
#define threadIdx (static_cast<const uint3 &>(kiln_emu::cur->tid))
#define blockIdx (static_cast<const uint3 &>(kiln_emu::block_idx))
#define blockDim (static_cast<const dim3 &>(kiln_emu::block_dim))
#define gridDim (static_cast<const dim3 &>(kiln_emu::grid_dim))
#define warpSize 32

#define __syncthreads() kiln_emu::syncthreads(__LINE__)
#define __syncwarp(...) ((void)kiln_emu::warp_op(kiln_emu::SYNCWARP, kiln_emu_mask_or_all(__VA_ARGS__), 0, 0, 32, __LINE__))
inline unsigned kiln_emu_mask_or_all(unsigned m = 0xffffffffu) { return m; }
inline void __threadfence() {}
inline void __threadfence_block() {}
inline void __trap() { kiln_emu::fail("__trap() called"); }

/* warp shuffles: CUDA's overload set (int, unsigned, long, long long, float, double, ...) */
#define KILN_EMU_SHFL(T) \
  inline T __shfl_sync(unsigned m, T v, int src, int w = 32) { \
    return kiln_emu::from_bits<T>(kiln_emu::warp_op(kiln_emu::SHFL_IDX, m, kiln_emu::to_bits(v), src, w, __LINE__)); } \
  inline T __shfl_up_sync(unsigned m, T v, unsigned d, int w = 32) { \
    return kiln_emu::from_bits<T>(kiln_emu::warp_op(kiln_emu::SHFL_UP, m, kiln_emu::to_bits(v), (int)d, w, __LINE__)); } \
  inline T __shfl_down_sync(unsigned m, T v, unsigned d, int w = 32) { \
    return kiln_emu::from_bits<T>(kiln_emu::warp_op(kiln_emu::SHFL_DOWN, m, kiln_emu::to_bits(v), (int)d, w, __LINE__)); } \
  inline T __shfl_xor_sync(unsigned m, T v, int x, int w = 32) { \
    return kiln_emu::from_bits<T>(kiln_emu::warp_op(kiln_emu::SHFL_XOR, m, kiln_emu::to_bits(v), x, w, __LINE__)); }
KILN_EMU_SHFL(int)
KILN_EMU_SHFL(unsigned int)
KILN_EMU_SHFL(long)
KILN_EMU_SHFL(unsigned long)
KILN_EMU_SHFL(long long)
KILN_EMU_SHFL(unsigned long long)
KILN_EMU_SHFL(float)
KILN_EMU_SHFL(double)
#undef KILN_EMU_SHFL
inline unsigned __ballot_sync(unsigned m, int p) {
  return (unsigned)kiln_emu::warp_op(kiln_emu::BALLOT, m, p != 0, 0, 32, __LINE__); }
inline int __any_sync(unsigned m, int p) { return (int)kiln_emu::warp_op(kiln_emu::ANY, m, p != 0, 0, 32, __LINE__); }
inline int __all_sync(unsigned m, int p) { return (int)kiln_emu::warp_op(kiln_emu::ALL, m, p != 0, 0, 32, __LINE__); }

/* atomics: fibers never switch inside one, so read-modify-write is atomic; CUDA's overloads only */
#define KILN_EMU_ATOMIC(name, T, expr) inline T name(T *p, T v) { const T o = *p; *p = (expr); return o; }
KILN_EMU_ATOMIC(atomicAdd, int, (int)((unsigned)o + (unsigned)v))
KILN_EMU_ATOMIC(atomicAdd, unsigned int, o + v)
KILN_EMU_ATOMIC(atomicAdd, unsigned long long, o + v)
KILN_EMU_ATOMIC(atomicAdd, float, o + v)
KILN_EMU_ATOMIC(atomicAdd, double, o + v)
KILN_EMU_ATOMIC(atomicSub, int, (int)((unsigned)o - (unsigned)v))
KILN_EMU_ATOMIC(atomicSub, unsigned int, o - v)
KILN_EMU_ATOMIC(atomicExch, int, v)
KILN_EMU_ATOMIC(atomicExch, unsigned int, v)
KILN_EMU_ATOMIC(atomicExch, unsigned long long, v)
KILN_EMU_ATOMIC(atomicExch, float, v)
KILN_EMU_ATOMIC(atomicMax, int, o > v ? o : v)
KILN_EMU_ATOMIC(atomicMax, unsigned int, o > v ? o : v)
KILN_EMU_ATOMIC(atomicMax, long long, o > v ? o : v)
KILN_EMU_ATOMIC(atomicMax, unsigned long long, o > v ? o : v)
KILN_EMU_ATOMIC(atomicMin, int, o < v ? o : v)
KILN_EMU_ATOMIC(atomicMin, unsigned int, o < v ? o : v)
KILN_EMU_ATOMIC(atomicMin, long long, o < v ? o : v)
KILN_EMU_ATOMIC(atomicMin, unsigned long long, o < v ? o : v)
KILN_EMU_ATOMIC(atomicAnd, int, o & v)
KILN_EMU_ATOMIC(atomicAnd, unsigned int, o & v)
KILN_EMU_ATOMIC(atomicOr, int, o | v)
KILN_EMU_ATOMIC(atomicOr, unsigned int, o | v)
KILN_EMU_ATOMIC(atomicXor, int, o ^ v)
KILN_EMU_ATOMIC(atomicXor, unsigned int, o ^ v)
#undef KILN_EMU_ATOMIC
#define KILN_EMU_CAS(T) inline T atomicCAS(T *p, T c, T v) { const T o = *p; if (o == c) *p = v; return o; }
KILN_EMU_CAS(int)
KILN_EMU_CAS(unsigned int)
KILN_EMU_CAS(unsigned long long)
KILN_EMU_CAS(unsigned short)
#undef KILN_EMU_CAS

/* bit casts and fast-math intrinsics */
inline float __int_as_float(int x) { return kiln_emu::from_bits<float>((unsigned)x); }
inline float __uint_as_float(unsigned x) { return kiln_emu::from_bits<float>(x); }
inline int __float_as_int(float x) { return (int)(unsigned)kiln_emu::to_bits(x); }
inline unsigned __float_as_uint(float x) { return (unsigned)kiln_emu::to_bits(x); }
inline double __longlong_as_double(long long x) { return kiln_emu::from_bits<double>((unsigned long long)x); }
inline long long __double_as_longlong(double x) { return (long long)kiln_emu::to_bits(x); }
inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __sinf(float x) { return sinf(x); }
inline float __cosf(float x) { return cosf(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline double rsqrt(double x) { return 1.0 / sqrt(x); }
inline float __saturatef(float x) { return x != x ? 0.0f : x < 0.0f ? 0.0f : x > 1.0f ? 1.0f : x; }
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz((unsigned)x); }
inline int __clzll(long long x) { return x == 0 ? 64 : __builtin_clzll((unsigned long long)x); }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __ffsll(long long x) { return __builtin_ffsll(x); }
template <typename T> inline T __ldg(const T *p) { return *p; }

/* CUDA's max/min overload set */
#define KILN_EMU_MINMAX(T) \
  inline T max(T a, T b) { return a > b ? a : b; } \
  inline T min(T a, T b) { return a < b ? a : b; }
KILN_EMU_MINMAX(int)
KILN_EMU_MINMAX(unsigned int)
KILN_EMU_MINMAX(long)
KILN_EMU_MINMAX(unsigned long)
KILN_EMU_MINMAX(long long)
KILN_EMU_MINMAX(unsigned long long)
#undef KILN_EMU_MINMAX
inline float max(float a, float b) { return fmaxf(a, b); }
inline float min(float a, float b) { return fminf(a, b); }
inline double max(double a, double b) { return fmax(a, b); }
inline double min(double a, double b) { return fmin(a, b); }
inline double max(float a, double b) { return fmax((double)a, b); }
inline double max(double a, float b) { return fmax(a, (double)b); }
inline double min(float a, double b) { return fmin((double)a, b); }
inline double min(double a, float b) { return fmin(a, (double)b); }

/* what device.py substitutes for the renderer's inline PTX float16 conversions */
inline float kiln_emu_h2f(unsigned short h) { return kiln_emu::h2f(h); }
inline unsigned short kiln_emu_f2h(float f) { return kiln_emu::f2h(f); }

namespace kiln_emu {
/* trampolines: args[i] is the i-th parameter (a pointer) or points at a scalar parameter */
template <typename A> inline A arg(void *p) {
  if constexpr (std::is_pointer<A>::value) return static_cast<A>(p);
  else return *static_cast<A *>(p);
}
template <typename... A, size_t... I>
inline void call_with(void (*f)(A...), void **args, std::index_sequence<I...>) { f(arg<A>(args[I])...); }
template <typename... A> inline void call(void (*f)(A...), void **args) {
  call_with(f, args, std::index_sequence_for<A...>{}); }
template <typename... A> constexpr int nargs(void (*)(A...)) { return (int)sizeof...(A); }
} /* namespace kiln_emu */

#endif /* KILN_EMU_H */
