/*
 * AES-256-GCM for the security envelope (src/internal/security/envelope.ts), without node:crypto's
 * per-datagram cipher object. node:crypto cannot re-IV a GCM context, so every datagram pays a
 * createCipheriv/createDecipheriv (~5-15 us); here a key owns two EVP contexts, keyed once, and a
 * datagram only re-inits the IV (the AES key schedule is kept).
 *
 * One N-API call per seal and per open, a status int back, no exceptions and no JS objects per
 * call: the nonce and header are read from the datagram's own bytes (header offsets 0..24, nonce
 * 4..16, docs/PROTOCOL.md "Security").
 *
 * OpenSSL is not linked: the node binary exports its bundled OpenSSL's EVP_* symbols, and the
 * headers come with Node's (/usr/include/node/openssl), so the addon uses Node's own OpenSSL.
 */
#include <node_api.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#define HEADER 24
#define NONCE_AT 4
#define TAG 16
#define KEY_BYTES 32

/* Status codes (kept in step with src/internal/security/gcm.ts). */
#define OK 1
#define AUTH_FAILED 0
#define BAD_ARGS (-1)
#define CRYPTO_ERROR (-2)

typedef struct {
  EVP_CIPHER_CTX* seal;
  EVP_CIPHER_CTX* open;
} gcm_key;

static void free_key(napi_env env, void* data, void* hint) {
  (void)env;
  (void)hint;
  gcm_key* k = (gcm_key*)data;
  EVP_CIPHER_CTX_free(k->seal);
  EVP_CIPHER_CTX_free(k->open);
  /* The key schedule lives in the contexts: EVP_CIPHER_CTX_free cleanses them. */
  free(k);
}

static napi_value status(napi_env env, int s) {
  napi_value v;
  napi_create_int32(env, s, &v);
  return v;
}

/* newKey(key: 32 bytes) -> external handle, or undefined if OpenSSL refused. */
static napi_value new_key(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_value result = NULL;
  void* key;
  size_t key_len;
  napi_get_undefined(env, &result);
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1) return result;
  if (napi_get_buffer_info(env, argv[0], &key, &key_len) != napi_ok || key_len != KEY_BYTES) return result;
  gcm_key* k = (gcm_key*)calloc(1, sizeof(gcm_key));
  if (k == NULL) return result;
  k->seal = EVP_CIPHER_CTX_new();
  k->open = EVP_CIPHER_CTX_new();
  if (k->seal == NULL || k->open == NULL ||
      EVP_EncryptInit_ex(k->seal, EVP_aes_256_gcm(), NULL, (const unsigned char*)key, NULL) != 1 ||
      EVP_DecryptInit_ex(k->open, EVP_aes_256_gcm(), NULL, (const unsigned char*)key, NULL) != 1) {
    free_key(env, k, NULL);
    return result;
  }
  if (napi_create_external(env, k, free_key, NULL, &result) != napi_ok) {
    free_key(env, k, NULL);
    napi_get_undefined(env, &result);
  }
  return result;
}

/* Whether two byte ranges share memory (an output must not overlap an input). */
static int overlap(const unsigned char* a, size_t a_len, const unsigned char* b, size_t b_len) {
  return a < b + b_len && b < a + a_len;
}

/* The handle and one or two byte arrays (any ArrayBufferView) of a seal/open call. */
static int args(napi_env env, napi_callback_info info, gcm_key** k, unsigned char** a, size_t* a_len,
                unsigned char** b, size_t* b_len) {
  size_t want = b == NULL ? 2 : 3;
  size_t argc = want;
  napi_value argv[3];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < want) return 0;
  if (napi_get_value_external(env, argv[0], (void**)k) != napi_ok || *k == NULL) return 0;
  if (napi_get_buffer_info(env, argv[1], (void**)a, a_len) != napi_ok) return 0;
  if (b != NULL && napi_get_buffer_info(env, argv[2], (void**)b, b_len) != napi_ok) return 0;
  return 1;
}

/*
 * sealEncrypt / sealAuthenticate(key, out, inner) -> status. `out` is the envelope, 24 + inner.length + 16 bytes,
 * its header (bytes 0..24) already written: the header is the AAD and its bytes 4..16 the nonce.
 * Writes the inner datagram's ciphertext (encrypt) or the inner datagram itself (authenticate: GMAC
 * over header then inner datagram) at 24, and the tag after it.
 */
static napi_value seal(napi_env env, napi_callback_info info, int encrypt) {
  gcm_key* k;
  unsigned char *out, *inner;
  size_t out_len, n;
  int len;
  if (!args(env, info, &k, &out, &out_len, &inner, &n)) return status(env, BAD_ARGS);
  if (n > 0x7fffffff - HEADER - TAG || out_len != HEADER + n + TAG || overlap(out, out_len, inner, n))
    return status(env, BAD_ARGS);
  EVP_CIPHER_CTX* c = k->seal;
  unsigned char* body = out + HEADER;
  if (EVP_EncryptInit_ex(c, NULL, NULL, NULL, out + NONCE_AT) != 1 || EVP_EncryptUpdate(c, NULL, &len, out, HEADER) != 1)
    return status(env, CRYPTO_ERROR);
  if (encrypt) {
    if (n > 0 && EVP_EncryptUpdate(c, body, &len, inner, (int)n) != 1) return status(env, CRYPTO_ERROR);
  } else {
    if (n > 0 && EVP_EncryptUpdate(c, NULL, &len, inner, (int)n) != 1) return status(env, CRYPTO_ERROR);
    memmove(body, inner, n);
  }
  /* GCM is a stream mode: everything was written by the update, final writes nothing. */
  if (EVP_EncryptFinal_ex(c, body + n, &len) != 1 || EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, TAG, body + n) != 1)
    return status(env, CRYPTO_ERROR);
  return status(env, OK);
}

/*
 * openEncrypt(key, bytes, out) / openAuthenticate(key, bytes) -> status. `bytes` is a whole
 * envelope (> 40 bytes, checked by the caller and again here). Encrypt: decrypts bytes 24..end-16
 * into `out` (exactly that long; garbage unless OK). Authenticate: checks the GMAC over bytes
 * 0..end-16 (header and inner datagram as AAD), nothing copied.
 */
static napi_value open_(napi_env env, napi_callback_info info, int encrypt) {
  gcm_key* k;
  unsigned char *bytes, *out = NULL;
  size_t length, out_len = 0;
  int len;
  if (!args(env, info, &k, &bytes, &length, encrypt ? &out : NULL, &out_len)) return status(env, BAD_ARGS);
  if (length <= HEADER + TAG || length > 0x7fffffff) return status(env, BAD_ARGS);
  size_t n = length - HEADER - TAG;
  /* In place (out is exactly the ciphertext's bytes) is fine for GCM; any other overlap is not. */
  if (encrypt && (out_len != n || (out != bytes + HEADER && overlap(out, out_len, bytes, length))))
    return status(env, BAD_ARGS);
  EVP_CIPHER_CTX* c = k->open;
  unsigned char* tag = bytes + HEADER + n;
  if (EVP_DecryptInit_ex(c, NULL, NULL, NULL, bytes + NONCE_AT) != 1 ||
      EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, TAG, tag) != 1)
    return status(env, CRYPTO_ERROR);
  if (encrypt) {
    if (EVP_DecryptUpdate(c, NULL, &len, bytes, HEADER) != 1 || EVP_DecryptUpdate(c, out, &len, bytes + HEADER, (int)n) != 1)
      return status(env, CRYPTO_ERROR);
  } else if (EVP_DecryptUpdate(c, NULL, &len, bytes, (int)(HEADER + n)) != 1) {
    return status(env, CRYPTO_ERROR);
  }
  /* Final compares the tag (in constant time); nothing is written in GCM. */
  return status(env, EVP_DecryptFinal_ex(c, encrypt ? out + n : bytes, &len) == 1 ? OK : AUTH_FAILED);
}

static napi_value seal_encrypt(napi_env env, napi_callback_info info) { return seal(env, info, 1); }
static napi_value seal_authenticate(napi_env env, napi_callback_info info) { return seal(env, info, 0); }
static napi_value open_encrypt(napi_env env, napi_callback_info info) { return open_(env, info, 1); }
static napi_value open_authenticate(napi_env env, napi_callback_info info) { return open_(env, info, 0); }

NAPI_MODULE_INIT() {
  napi_property_descriptor props[] = {
      {"newKey", NULL, new_key, NULL, NULL, NULL, napi_enumerable, NULL},
      {"sealEncrypt", NULL, seal_encrypt, NULL, NULL, NULL, napi_enumerable, NULL},
      {"sealAuthenticate", NULL, seal_authenticate, NULL, NULL, NULL, napi_enumerable, NULL},
      {"openEncrypt", NULL, open_encrypt, NULL, NULL, NULL, napi_enumerable, NULL},
      {"openAuthenticate", NULL, open_authenticate, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  if (napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props) != napi_ok) return NULL;
  return exports;
}
