/**
 * Replay rejection of the datagram security layer: per sender (key id + 64-bit nonce prefix) a
 * sliding window of the last `REPLAY_WINDOW` counters (a bitmap), in a table of at most
 * `MAX_SENDERS` senders evicted least recently used first. Only authenticated datagrams reach it,
 * so traffic without the key can neither grow the table nor move a window.
 */

/** Counters remembered per sender: one older than the newest minus this is dropped as a replay. */
export const REPLAY_WINDOW = 4096
/** Senders remembered per connection. */
export const MAX_SENDERS = 1024

const WORDS = REPLAY_WINDOW / 32

interface Window {
  readonly keyId: number
  readonly prefixHi: number
  readonly prefixLo: number
  highest: number
  readonly bits: Uint32Array
}

export class ReplayWindow {
  private readonly senders = new Map<number, Window>()
  private lastKey = -1
  private lastWindow: Window | undefined = undefined

  constructor(private readonly maxSenders: number = MAX_SENDERS) {}

  get size(): number {
    return this.senders.size
  }

  /**
   * Records `counter` for the sender and returns true, or returns false (recording nothing) when it
   * was seen before or is older than the window.
   */
  accept(keyId: number, prefixHi: number, prefixLo: number, counter: number): boolean {
    // 53 bits of the 72-bit identity as the map key; the full identity is checked below.
    const key = (prefixHi >>> 0) * 2097152 + (((prefixLo >>> 11) ^ (keyId << 13)) & 0x1fffff)
    let w = key === this.lastKey ? this.lastWindow : this.senders.get(key)
    if (w === undefined || w.keyId !== keyId || w.prefixHi !== prefixHi || w.prefixLo !== prefixLo) {
      // New sender (or, once in 2^53, another one colliding on the map key: it takes the slot).
      if (w !== undefined) this.senders.delete(key)
      else if (this.senders.size >= this.maxSenders) {
        const oldest = this.senders.keys().next().value
        if (oldest !== undefined) this.senders.delete(oldest)
      }
      w = { keyId, prefixHi, prefixLo, highest: counter, bits: new Uint32Array(WORDS) }
      w.bits[(counter >>> 5) % WORDS] = 1 << (counter & 31)
      this.senders.set(key, w)
      this.lastKey = key
      this.lastWindow = w
      return true
    }
    if (key !== this.lastKey) {
      // Least recently used first: move it to the end of the insertion order.
      this.senders.delete(key)
      this.senders.set(key, w)
      this.lastKey = key
      this.lastWindow = w
    }
    const bits = w.bits
    if (counter > w.highest) {
      const diff = counter - w.highest
      if (diff >= REPLAY_WINDOW) bits.fill(0)
      else {
        // Clear the slots of the counters skipped over (they now stand for new counters).
        for (let c = w.highest + 1; c < counter; c++) bits[(c >>> 5) % WORDS] &= ~(1 << (c & 31))
      }
      w.highest = counter
      bits[(counter >>> 5) % WORDS] |= 1 << (counter & 31)
      return true
    }
    if (w.highest - counter >= REPLAY_WINDOW) return false
    const word = (counter >>> 5) % WORDS
    const bit = 1 << (counter & 31)
    if ((bits[word] & bit) !== 0) return false
    bits[word] |= bit
    return true
  }
}
