/**
 * Bump allocation of short-lived byte arrays from shared slabs, as plain `Uint8Array` views: a
 * `Buffer.allocUnsafe` per datagram costs a FastBuffer (species constructor) and a pool refill
 * every few allocations. A region is never handed out twice; a slab is freed by the GC once its
 * last view is gone, so whoever keeps one view (the retransmission cache, a socket's queue) keeps
 * its slab. Starts are 8-byte aligned, as separate allocations would be.
 */
export const slabAllocator = (slabBytes: number): ((size: number) => Uint8Array) => {
  let slab: ArrayBufferLike = new ArrayBuffer(0)
  let free = 0
  return (size) => {
    if (slab.byteLength - free < size) {
      slab = newSlab(Math.max(slabBytes, size))
      free = 0
    }
    const view = new Uint8Array(slab, free, size)
    free += (size + 7) & ~7
    return view
  }
}

/** A fresh slab of `bytes`, not zero-filled: whoever carves it writes every byte it hands out. */
export const newSlab = (bytes: number): ArrayBuffer => Buffer.allocUnsafeSlow(bytes).buffer as ArrayBuffer
