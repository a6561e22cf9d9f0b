/*
 * Memory for received updates that stays resident (src/internal/slab.ts `unzeroed`).
 *
 * A reassembled update is handed to the application as the buffer it was assembled in, so it
 * cannot come from a pool that JavaScript manages: nobody knows when the application drops it. A
 * fresh 64 KiB ArrayBuffer per update, though, is memory the allocator has just given back to the
 * kernel (glibc trims its heap when a collection frees many at once): every page of it faults
 * again, ~10 % of a subscriber's CPU at 64 KiB. Here each buffer is an external ArrayBuffer over a
 * block of a power-of-two size class whose finalizer (run by node on the JS thread once the
 * collector has freed the buffer) puts the block back on its class's free list, so the next update
 * lands in memory that is mapped and, taken LIFO, likely still in cache. The free lists together
 * keep at most POOL_CACHE_BYTES; beyond that blocks go back to malloc. One pool per process: the
 * lock is for worker threads, whose finalizers run on their own threads.
 */
#include "pool.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

/* Size classes 2^POOL_MIN_SHIFT .. 2^POOL_MAX_SHIFT (16 KiB .. 1 MiB, src/internal/slab.ts says the same). */
#define POOL_MIN_SHIFT 14
#define POOL_MAX_SHIFT 20
#define POOL_CLASSES (POOL_MAX_SHIFT - POOL_MIN_SHIFT + 1)
#define POOL_CACHE_BYTES ((size_t)32 << 20)

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
/* Free blocks of each class, linked through their first word. */
static void *free_list[POOL_CLASSES];
static size_t cached;
/* [blocks made, blocks taken from a free list, blocks put back, blocks freed over the cap] */
static double counters[4];

static unsigned class_of(size_t size) {
  unsigned c = 0;
  while (((size_t)1 << (c + POOL_MIN_SHIFT)) < size) c++;
  return c;
}

static void pool_finalize(napi_env env, void *data, void *hint) {
  unsigned c = (unsigned)(uintptr_t)hint;
  size_t size = (size_t)1 << (c + POOL_MIN_SHIFT);
  pthread_mutex_lock(&lock);
  if (cached + size <= POOL_CACHE_BYTES) {
    *(void **)data = free_list[c];
    free_list[c] = data;
    cached += size;
    counters[2]++;
    data = NULL;
  } else {
    counters[3]++;
  }
  pthread_mutex_unlock(&lock);
  free(data);
}

/* poolAlloc(size) -> ArrayBuffer of exactly `size` bytes (16 KiB .. 1 MiB), not zero-filled. */
napi_value pool_alloc(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], result;
  uint32_t size = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 ||
      napi_get_value_uint32(env, argv[0], &size) != napi_ok || size > ((uint32_t)1 << POOL_MAX_SHIFT)) {
    napi_throw_range_error(env, NULL, "poolAlloc: size must be at most 1 MiB");
    return NULL;
  }
  unsigned c = class_of(size);
  pthread_mutex_lock(&lock);
  void *data = free_list[c];
  if (data) {
    free_list[c] = *(void **)data;
    cached -= (size_t)1 << (c + POOL_MIN_SHIFT);
    counters[1]++;
  } else {
    counters[0]++;
  }
  pthread_mutex_unlock(&lock);
  if (!data && !(data = malloc((size_t)1 << (c + POOL_MIN_SHIFT)))) {
    napi_throw_error(env, "ENOMEM", "poolAlloc: out of memory");
    return NULL;
  }
  napi_status s = napi_create_external_arraybuffer(env, data, size, pool_finalize, (void *)(uintptr_t)c, &result);
  if (s != napi_ok) {
    /* e.g. a runtime that allows no external buffers: the caller falls back to plain ones. */
    pool_finalize(env, data, (void *)(uintptr_t)c);
    napi_throw_error(env, NULL, "poolAlloc: external ArrayBuffers are not available");
    return NULL;
  }
  return result;
}

/* poolStats(out: Float64Array(5)): made, reused, returned, released, bytes cached now. */
napi_value pool_stats(napi_env env, napi_callback_info info) {
  size_t argc = 1, length = 0;
  napi_value argv[1];
  napi_typedarray_type type;
  void *out = NULL;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 ||
      napi_get_typedarray_info(env, argv[0], &type, &length, &out, NULL, NULL) != napi_ok ||
      type != napi_float64_array || length < 5) {
    napi_throw_type_error(env, NULL, "poolStats: a Float64Array of 5");
    return NULL;
  }
  double *o = out;
  pthread_mutex_lock(&lock);
  for (int i = 0; i < 4; i++) o[i] = counters[i];
  o[4] = (double)cached;
  pthread_mutex_unlock(&lock);
  return NULL;
}
