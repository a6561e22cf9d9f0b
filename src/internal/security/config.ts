/**
 * The engine's view of a connection's security settings: plain data resolved once from
 * `SecurityConfig` when the connection opens (keys parsed, passphrases stretched), so the
 * per-datagram path never derives anything.
 */

export type SecurityMode = "encrypt" | "authenticate"

export interface EngineSecurityKey {
  /** Key id carried in every datagram, 0..255. */
  readonly id: number
  /** The 256-bit key (before the per-connection HKDF). */
  readonly key: Uint8Array
}

export interface EngineSecurity {
  readonly mode: SecurityMode
  /** The key this endpoint seals with (`keys[0]`), then the other accepted ones (rotation). */
  readonly keys: ReadonlyArray<EngineSecurityKey>
  /**
   * Largest difference, ms, between a datagram's timestamp and the receiver's `now` (either way)
   * before it is dropped as stale; 0 turns the check off.
   */
  readonly freshnessMs: number
  /** What the per-connection subkey is bound to: the connection's `group:port`. */
  readonly context: string
}

export const DEFAULT_FRESHNESS_MS = 300_000
