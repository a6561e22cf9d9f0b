/**
 * Flow control bookkeeping of one local sender: one limit per live receiver (how far the sender
 * may go for it: its position plus its window, in bytes or in sequence numbers), and the bounding
 * one — the smallest ("min", the slowest receiver) or the largest ("max"). Plain state, no I/O.
 *
 * The bound is kept incrementally: a report that beats it replaces it in O(1); only when the
 * bounding receiver itself moves away (the slowest advances) or leaves is it found again by a scan,
 * and lazily, when a sender asks. With N receivers each reporting a few times per window, that is
 * O(N) per window round, not O(N) per report.
 */
import type { FlowControlMode } from "./engine.js"

export class FlowWindow {
  private readonly limits = new Map<bigint, number>()
  private bound = 0
  private arg: bigint | undefined = undefined
  private dirty = false
  private readonly min: boolean

  constructor(mode: Exclude<FlowControlMode, "none">) {
    this.min = mode === "min"
  }

  get size(): number {
    return this.limits.size
  }

  get(receiver: bigint): number | undefined {
    return this.limits.get(receiver)
  }

  entries(): IterableIterator<[bigint, number]> {
    return this.limits.entries()
  }

  /** `a` bounds better than `b`: lower for "min", higher for "max". */
  private beats(a: number, b: number): boolean {
    return this.min ? a < b : a > b
  }

  set(receiver: bigint, limit: number): void {
    this.limits.set(receiver, limit)
    if (this.dirty) return
    if (receiver === this.arg) {
      if (limit === this.bound || this.beats(limit, this.bound)) this.bound = limit
      else this.dirty = true
    } else if (this.arg === undefined || this.beats(limit, this.bound)) {
      this.bound = limit
      this.arg = receiver
    }
  }

  delete(receiver: bigint): boolean {
    if (!this.limits.delete(receiver)) return false
    if (receiver === this.arg) this.dirty = true
    return true
  }

  /** The bounding receiver's limit, or undefined when no receiver reported. */
  limit(): number | undefined {
    if (this.dirty) {
      this.dirty = false
      this.arg = undefined
      for (const [id, p] of this.limits) {
        if (this.arg === undefined || this.beats(p, this.bound)) {
          this.bound = p
          this.arg = id
        }
      }
    }
    return this.arg === undefined ? undefined : this.bound
  }
}

/** A sender's flow control: limits in cumulative data bytes sent and in sequence numbers. */
export interface SenderFlow {
  readonly bytes: FlowWindow
  readonly seqs: FlowWindow
}

export const makeSenderFlow = (mode: Exclude<FlowControlMode, "none">): SenderFlow => ({
  bytes: new FlowWindow(mode),
  seqs: new FlowWindow(mode)
})
