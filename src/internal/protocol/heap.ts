/**
 * A binary min-heap of (time, item) deadlines with lazy invalidation, so an endpoint with many
 * remote sessions finds and runs the due ones in O(log n) each instead of scanning every session
 * (docs/PROTOCOL.md "Hostile networks": 150 000 forged session ids must not make every timer and
 * every `nextDeadline` cost O(sessions)).
 *
 * The owner keeps, per item, the time of the entry it considers current (`heapAt` on the item);
 * entries whose time differs from it are stale and skipped when they surface. A deadline that
 * moves later needs no update: its entry surfaces early, the owner finds nothing due and pushes
 * the new time. Only a deadline that moves earlier pushes a new entry.
 */
export interface HeapItem {
  /** Time of this item's current entry (Infinity: none). */
  heapAt: number
}

export class DeadlineHeap<T extends HeapItem> {
  private times: Array<number> = []
  private items: Array<T> = []

  get size(): number {
    return this.times.length
  }

  /** Schedules `item` at `time` unless it already has an entry at or before it. */
  schedule(item: T, time: number): void {
    if (!(time < item.heapAt)) return
    item.heapAt = time
    if (time === Number.POSITIVE_INFINITY) return
    this.push(time, item)
  }

  /** Earliest live entry's time (stale entries on top are dropped), Infinity when empty. */
  peek(): number {
    const times = this.times
    const items = this.items
    while (times.length > 0 && items[0].heapAt !== times[0]) this.pop()
    return times.length > 0 ? times[0] : Number.POSITIVE_INFINITY
  }

  /** Removes and returns the earliest live item if its time is ≤ `now` (its `heapAt` is reset). */
  popDue(now: number): T | undefined {
    if (!(this.peek() <= now)) return undefined
    const item = this.items[0]
    this.pop()
    item.heapAt = Number.POSITIVE_INFINITY
    return item
  }

  /** Rebuilds from the live items when stale entries dominate (bounded memory). */
  compact(live: Iterable<T>, count: number): void {
    if (this.times.length <= 64 + 2 * count) return
    const entries: Array<[number, T]> = []
    for (const item of live) if (item.heapAt !== Number.POSITIVE_INFINITY) entries.push([item.heapAt, item])
    entries.sort((a, b) => a[0] - b[0])
    this.times = entries.map((e) => e[0])
    this.items = entries.map((e) => e[1])
  }

  clear(): void {
    this.times = []
    this.items = []
  }

  private push(time: number, item: T): void {
    const times = this.times
    const items = this.items
    let i = times.length
    times.push(time)
    items.push(item)
    while (i > 0) {
      const parent = (i - 1) >> 1
      if (times[parent] <= time) break
      times[i] = times[parent]
      items[i] = items[parent]
      i = parent
    }
    times[i] = time
    items[i] = item
  }

  private pop(): void {
    const times = this.times
    const items = this.items
    const lastTime = times.pop()!
    const lastItem = items.pop()!
    const n = times.length
    if (n === 0) return
    let i = 0
    for (;;) {
      let child = 2 * i + 1
      if (child >= n) break
      if (child + 1 < n && times[child + 1] < times[child]) child++
      if (times[child] >= lastTime) break
      times[i] = times[child]
      items[i] = items[child]
      i = child
    }
    times[i] = lastTime
    items[i] = lastItem
  }
}
