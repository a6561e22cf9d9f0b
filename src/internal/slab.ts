/**
 * Bump allocation of short-lived byte arrays from shared slabs, as plain `Uint8Array` views: a
 * `Buffer.allocUnsafe` per datagram costs a FastBuffer (species constructor) and a pool refill
 * every few allocations. A region is never handed out twice; a slab is freed by the GC once its
 * last view is gone, so whoever keeps one view (the retransmission cache, a socket's queue) keeps
 * its slab. Starts are 8-byte aligned, as separate allocations would be.
 */
export const slabAllocator = (slabBytes: number): ((size: number) => Uint8Array) => {
  // A pool never enabled: slabs are only carved, and left to the GC.
  const pool = new SlabPool(slabBytes)
  return (size) => pool.alloc(size)
}

/** A fresh slab of `bytes`, not zero-filled: whoever carves it writes every byte it hands out. */
export const newSlab = (bytes: number): ArrayBuffer => Buffer.allocUnsafeSlow(bytes).buffer as ArrayBuffer

/** Sizes that `unzeroed` takes from resident memory when it can (POOL_MIN/MAX_SHIFT in native/udp/src/pool.c). */
export const RESIDENT_MIN_BYTES = 16 * 1024
export const RESIDENT_MAX_BYTES = 1024 * 1024

/** The native addon's pool of resident memory (`useResidentMemory`), or undefined. */
let resident: ((bytes: number) => ArrayBuffer) | undefined

/**
 * From now on, `unzeroed` buffers of RESIDENT_MIN_BYTES..RESIDENT_MAX_BYTES come from `alloc`
 * (native/udp/src/pool.c: external ArrayBuffers whose memory goes back to a free list, not to the
 * kernel, once the collector frees them). Set once per process by the native transport when its
 * addon loads; a failing `alloc` switches it off again.
 */
export const useResidentMemory = (alloc: ((bytes: number) => ArrayBuffer) | undefined): void => {
  resident = alloc
}

/**
 * `bytes` of memory that is not zero-filled, as a plain `Uint8Array` of its own: for a buffer the
 * caller fills completely before anyone else sees it (zeroing a 64 KiB reassembly buffer was 9 % of
 * a subscriber's CPU, and faulting its fresh pages in another 10 %, which resident memory saves).
 */
export const unzeroed = (bytes: number): Uint8Array => {
  if (resident !== undefined && bytes >= RESIDENT_MIN_BYTES && bytes <= RESIDENT_MAX_BYTES) {
    try {
      return new Uint8Array(resident(bytes))
    } catch {
      // out of memory, or a runtime without external buffers: plain buffers from now on
      resident = undefined
    }
  }
  return new Uint8Array(newSlab(bytes))
}

/**
 * Where pools note the slab of the view they handed out last, when it is one that comes back
 * (undefined otherwise). Pools may share one, so that their owner asks once, whichever carved last.
 */
export interface LastSlab {
  slab: ArrayBuffer | undefined
}

interface SlabRecord {
  /** Views handed out of the slab and not released yet. */
  live: number
  /** No longer carved: reusable once `live` is 0. */
  retired: boolean
}

/**
 * Slabs carved like `slabAllocator`'s, that come back: a sender's datagrams (packed segments and
 * fragments). Each view handed out counts on its slab; `release(view)` (the retransmission cache
 * evicted it) uncounts it, and a retired slab with nothing left out is reusable once the socket is
 * done with its bytes, which the owner says with `recycle()` (after the sockets flushed). Fresh
 * memory per datagram cost a 64 KiB publisher a quarter of its CPU in the collector (ArrayBuffers
 * promoted while cached, then freed by mark-compacts) plus page faults. Until `enable()` it
 * behaves as `slabAllocator` (nothing is counted or kept). At most `maxSpare` slabs wait for reuse;
 * more are left to the GC.
 */
export class SlabPool {
  private slab: ArrayBuffer = new ArrayBuffer(0)
  private free = 0
  private current: SlabRecord | undefined = undefined
  private readonly records = new Map<ArrayBufferLike, SlabRecord>()
  /** Fully released, until the next `recycle`. */
  private released: Array<ArrayBuffer> = []
  private readonly spare: Array<ArrayBuffer> = []
  /** Slabs taken from `spare` (for tests and the benchmark's profile). */
  reused = 0
  private pooling = false

  constructor(
    readonly slabBytes: number,
    private readonly maxSpare = 32,
    /**
     * The slab of the view handed out last, for `release`: an owner that keeps views for long (the
     * retransmission cache) learns their slab here, for nothing. A view's `buffer` getter is a call
     * into C++: read per datagram it was ~8 % of a 64 KiB publisher's CPU (perf).
     */
    readonly last: LastSlab = { slab: undefined }
  ) {}

  /** From now on slabs are counted and come back (the owner will call `release` and `recycle`). */
  enable(): void {
    this.pooling = true
  }

  /** `size` bytes, counted on their slab until released. */
  alloc(size: number): Uint8Array {
    if (this.slab.byteLength - this.free < size) this.next(size)
    return this.commit(size)
  }

  /**
   * A view of `size` bytes where the next `commit` will start, not counted yet (a packed segment is
   * written into its whole `segmentSize`, then only the bytes written are kept).
   */
  reserve(size: number): Uint8Array {
    if (this.slab.byteLength - this.free < size) this.next(size)
    return new Uint8Array(this.slab, this.free, size)
  }

  /** Counts the `size` bytes at the reserved start as handed out (a view of them is returned). */
  commit(size: number): Uint8Array {
    const view = new Uint8Array(this.slab, this.free, size)
    this.free += (size + 7) & ~7
    if (this.current !== undefined) {
      this.current.live++
      this.last.slab = this.slab
    } else this.last.slab = undefined
    return view
  }

  /**
   * A view of `slab` handed out by this pool (`last.slab` when it was handed out) is no longer used
   * by its owner; a slab that is not this pool's is ignored.
   */
  release(slab: ArrayBufferLike): void {
    const record = this.records.get(slab)
    if (record === undefined) return
    if (--record.live === 0 && record.retired) this.retire(slab as ArrayBuffer, record)
  }

  /** The sockets are done with every datagram sent so far: released slabs may be carved again. */
  recycle(): void {
    if (this.released.length === 0) return
    for (const slab of this.released) if (this.spare.length < this.maxSpare) this.spare.push(slab)
    this.released = []
  }

  private next(size: number): void {
    const old = this.current
    if (old !== undefined) {
      old.retired = true
      if (old.live === 0) this.retire(this.slab, old)
    }
    if (!this.pooling || size > this.slabBytes) {
      // Not pooling, or larger than a slab (its own memory): left to the GC.
      this.slab = newSlab(Math.max(size, this.slabBytes))
      this.current = undefined
    } else {
      const reused = this.spare.pop()
      if (reused !== undefined) this.reused++
      this.slab = reused ?? newSlab(this.slabBytes)
      this.current = { live: 0, retired: false }
      this.records.set(this.slab, this.current)
    }
    this.free = 0
  }

  private retire(slab: ArrayBuffer, record: SlabRecord): void {
    if (this.records.get(slab) === record) this.records.delete(slab)
    if (this.released.length < this.maxSpare) this.released.push(slab)
  }
}
