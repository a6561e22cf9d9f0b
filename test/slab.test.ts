import { describe, expect, it } from "@effect/vitest"
import { RESIDENT_MAX_BYTES, RESIDENT_MIN_BYTES, SlabPool, unzeroed, useResidentMemory } from "../src/internal/slab.js"

describe("SlabPool", () => {
  it("carves views back to back, 8-byte aligned, and starts a new slab when one is full", () => {
    const pool = new SlabPool(64)
    pool.enable()
    const a = pool.alloc(20)
    const b = pool.alloc(24)
    const c = pool.alloc(24)
    expect(a.buffer).toBe(b.buffer)
    expect(b.byteOffset).toBe(24)
    expect(c.buffer).not.toBe(a.buffer)
  })

  it("reuses a slab only once every view of it was released and the owner recycled", () => {
    const pool = new SlabPool(64)
    pool.enable()
    const first = [pool.alloc(32), pool.alloc(32)]
    const slab = first[0].buffer
    pool.alloc(32) // a second slab: the first is retired
    pool.release(first[0].buffer)
    pool.recycle()
    pool.alloc(32)
    pool.alloc(32) // a third slab: the first still has a view out
    expect(pool.reused).toBe(0)
    pool.release(first[1].buffer)
    pool.alloc(32) // before recycle the socket may still read the first slab
    expect(pool.reused).toBe(0)
    pool.recycle()
    pool.alloc(32)
    const again = pool.alloc(32)
    expect(pool.reused).toBe(1)
    expect(again.buffer).toBe(slab)
  })

  it("counts the views of a reused slab afresh (a release of its earlier life is not remembered)", () => {
    const pool = new SlabPool(64)
    pool.enable()
    const old = [pool.alloc(32), pool.alloc(32)]
    for (const v of old) pool.release(v.buffer)
    pool.alloc(64) // retires the first slab, now free
    pool.recycle()
    const fresh = [pool.alloc(32), pool.alloc(32)]
    expect(fresh[0].buffer).toBe(old[0].buffer)
    pool.release(fresh[0].buffer)
    pool.alloc(64) // retires the reused slab with one view still out
    pool.recycle()
    pool.alloc(64)
    pool.alloc(64)
    // Its remaining view was never released: it must not come back.
    expect(pool.reused).toBe(1)
    pool.release(fresh[1].buffer)
    pool.recycle()
    pool.alloc(64)
    expect(pool.reused).toBe(2)
  })

  it("never enabled: nothing is counted or reused", () => {
    const pool = new SlabPool(64)
    const a = pool.alloc(64)
    pool.release(a.buffer)
    pool.alloc(64)
    pool.recycle()
    pool.alloc(64)
    expect(pool.reused).toBe(0)
  })
})

describe("unzeroed", () => {
  it("takes resident memory for the sizes the pool has, plain buffers for the rest, and plain ones after a failure", () => {
    const asked: Array<number> = []
    let fail = false
    useResidentMemory((bytes) => {
      asked.push(bytes)
      if (fail) throw new RangeError("no memory")
      return new ArrayBuffer(bytes)
    })
    try {
      for (const n of [
        RESIDENT_MIN_BYTES - 1,
        RESIDENT_MIN_BYTES,
        65_536,
        RESIDENT_MAX_BYTES,
        RESIDENT_MAX_BYTES + 1
      ]) {
        expect(unzeroed(n).length).toBe(n)
      }
      expect(asked).toEqual([RESIDENT_MIN_BYTES, 65_536, RESIDENT_MAX_BYTES])
      fail = true
      expect(unzeroed(65_536).length).toBe(65_536)
      expect(unzeroed(65_536).length).toBe(65_536)
      // The failing pool was asked once, then left alone.
      expect(asked).toEqual([RESIDENT_MIN_BYTES, 65_536, RESIDENT_MAX_BYTES, 65_536])
    } finally {
      useResidentMemory(undefined)
    }
  })
})
