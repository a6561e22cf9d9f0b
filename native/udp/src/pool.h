/* Resident memory for received updates (pool.c). */
#ifndef DISTRIBUTOR_POOL_H
#define DISTRIBUTOR_POOL_H
#ifndef NAPI_VERSION
#define NAPI_VERSION 8
#endif
#include <node_api.h>

napi_value pool_alloc(napi_env env, napi_callback_info info);
napi_value pool_stats(napi_env env, napi_callback_info info);
#endif
