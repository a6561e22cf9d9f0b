/**
 * Key material of the datagram security layer (docs/PROTOCOL.md "Security"): parsing configured
 * keys, the passphrase KDF and the per-connection subkey. Runs once when a connection opens, never
 * per datagram.
 */
import { hkdfSync, scryptSync } from "node:crypto"

export const KEY_BYTES = 32

/**
 * scrypt parameters of a passphrase (N = 2^15, r = 8, p = 1: ~32 MiB and ~0.1 s once per
 * connection). The salt is a fixed label: every peer must derive the same key from the same
 * passphrase without exchanging anything. Use a long random passphrase (or a key): a fixed salt
 * does not slow a dictionary attack on a captured datagram.
 */
export const PASSPHRASE_SALT = "effect-distributor/passphrase/v1"
const SCRYPT = { N: 1 << 15, r: 8, p: 1, maxmem: 64 * 1024 * 1024 } as const

/** HKDF-SHA256 salt prefix and info of a connection's subkey. */
const SUBKEY_SALT = "effect-distributor/connection/v1 "
const SUBKEY_INFO = "effect-distributor datagram key v1"

/**
 * A configured key: 64 hex digits, or base64 (standard or URL-safe, padding optional) of exactly
 * 32 bytes. Returns the bytes, or a reason why not.
 */
export const parseKey = (text: string): Uint8Array | string => {
  const s = text.trim()
  if (/^[0-9a-fA-F]+$/.test(s)) {
    if (s.length === 2 * KEY_BYTES) return Buffer.from(s, "hex")
    if (s.length > 44) return `a hex key must be exactly 64 hex digits (256 bits), got ${s.length}`
  }
  if (!/^[A-Za-z0-9+/_-]+={0,2}$/.test(s)) {
    return "a key must be 64 hex digits or the base64 of 32 bytes (e.g. `openssl rand -hex 32`)"
  }
  const bytes = Buffer.from(s.replace(/-/g, "+").replace(/_/g, "/"), "base64")
  if (bytes.length !== KEY_BYTES) {
    return `a key must be 256 bits: 64 hex digits or the base64 of 32 bytes, got ${bytes.length} bytes of base64`
  }
  return bytes
}

/** A passphrase stretched to a 256-bit key with scrypt and the fixed `PASSPHRASE_SALT`. */
export const passphraseKey = (passphrase: string): Uint8Array =>
  scryptSync(passphrase.normalize("NFC"), PASSPHRASE_SALT, KEY_BYTES, SCRYPT)

/**
 * The AES-256-GCM key of one connection: HKDF-SHA256(key, salt = label + `group:port`). A key
 * shared by several connections gives each its own subkey, so their nonce spaces never meet.
 */
export const connectionSubkey = (key: Uint8Array, context: string): Uint8Array =>
  Buffer.from(hkdfSync("sha256", key, SUBKEY_SALT + context, SUBKEY_INFO, KEY_BYTES))
