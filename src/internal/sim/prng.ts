/**
 * Seeded pseudo-random numbers for the deterministic simulator (and anything else in tests that
 * needs reproducible randomness: NAK back-off, session ids).
 *
 * Algorithm: sfc32 (Chris Doty-Humphrey's Small Fast Chaotic PRNG, 128-bit state, 32-bit output,
 * from PractRand), seeded by hashing a *seed path* string with cyrb128 and discarding the first 15
 * outputs. Only 32-bit integer arithmetic (`| 0`, `>>>`, `<<`) is used, so a seed gives the same
 * sequence on every platform and Node version.
 *
 * `fork(label)` derives an independent sub-stream from the *seed path* (`parentPath + "/" + label`),
 * not from the parent's current state: forking never consumes from the parent, and a fork's
 * sequence depends only on the root seed and the labels. That is what keeps one link's fault
 * pattern unchanged when a test adds another node or another link (or forks in another order).
 */

/** Anything accepted as a seed. Numbers, strings and bigints are hashed via their string form. */
export type Seed = number | string | bigint

/** cyrb128: a fast 128-bit string hash, used only to turn seed paths into sfc32 state. */
const cyrb128 = (str: string): [number, number, number, number] => {
  let h1 = 1779033703
  let h2 = 3144134277
  let h3 = 1013904242
  let h4 = 2773480762
  for (let i = 0; i < str.length; i++) {
    const k = str.charCodeAt(i)
    h1 = h2 ^ Math.imul(h1 ^ k, 597399067)
    h2 = h3 ^ Math.imul(h2 ^ k, 2869860233)
    h3 = h4 ^ Math.imul(h3 ^ k, 951274213)
    h4 = h1 ^ Math.imul(h4 ^ k, 2716044179)
  }
  h1 = Math.imul(h3 ^ (h1 >>> 18), 597399067)
  h2 = Math.imul(h4 ^ (h2 >>> 22), 2869860233)
  h3 = Math.imul(h1 ^ (h3 >>> 17), 951274213)
  h4 = Math.imul(h2 ^ (h4 >>> 19), 2716044179)
  h1 ^= h2 ^ h3 ^ h4
  h2 ^= h1
  h3 ^= h1
  h4 ^= h1
  return [h1 >>> 0, h2 >>> 0, h3 >>> 0, h4 >>> 0]
}

const TWO_POW_32 = 4294967296

export class Prng {
  /** The seed path this stream was derived from (root seed, then `/label` per fork). */
  readonly path: string
  private a: number
  private b: number
  private c: number
  private d: number

  constructor(seed: Seed) {
    this.path = String(seed)
    const [a, b, c, d] = cyrb128(this.path)
    this.a = a
    this.b = b
    this.c = c
    this.d = d
    // sfc32 needs a few rounds to mix a low-entropy state.
    for (let i = 0; i < 15; i++) this.u32()
  }

  /** Next uniformly distributed unsigned 32-bit integer. */
  u32(): number {
    const a = this.a
    const b = this.b
    const c = this.c
    const d = this.d
    const t = (((a + b) | 0) + d) | 0
    this.d = (d + 1) | 0
    this.a = b ^ (b >>> 9)
    this.b = (c + (c << 3)) | 0
    const r = (c << 21) | (c >>> 11)
    this.c = (r + t) | 0
    return t >>> 0
  }

  /** Uniform in [0, 1) with 32 bits of resolution. */
  next(): number {
    return this.u32() / TWO_POW_32
  }

  /** Uniform integer in [0, n). `n` must be a positive integer ≤ 2^32 (bias < n / 2^32). */
  int(n: number): number {
    if (!(n > 0) || n > TWO_POW_32 || !Number.isInteger(n)) throw new RangeError(`Prng.int: bad bound ${n}`)
    return Math.floor(this.next() * n)
  }

  /** Uniform float in [min, max). */
  range(min: number, max: number): number {
    return min + (max - min) * this.next()
  }

  /** True with probability `p` (p ≤ 0 never, p ≥ 1 always). */
  chance(p: number): boolean {
    return this.next() < p
  }

  /** A uniformly random unsigned 64-bit integer (e.g. a session id). */
  bigint64(): bigint {
    const hi = this.u32()
    const lo = this.u32()
    return (BigInt(hi) << 32n) | BigInt(lo)
  }

  /**
   * An independent stream named `label`. Depends only on this stream's seed path and the label,
   * never on how much of this stream was consumed.
   */
  fork(label: string): Prng {
    return new Prng(`${this.path}/${label}`)
  }
}

/** Convenience constructor. */
export const makePrng = (seed: Seed): Prng => new Prng(seed)
