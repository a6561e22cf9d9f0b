/**
 * The subscription index behind `Topic.make`. Patterns without wildcards live in a hash map keyed
 * by the whole topic string (one lookup, no splitting); patterns with `*` or `...` live in a trie
 * whose nodes have literal children, one `*` child, and the entries of patterns that end here
 * either exactly or with a trailing `...`. `match` walks only the nodes a topic can reach and
 * caches its result per topic string, because the same topics arrive over and over.
 *
 * Inputs to `add` are assumed to be valid patterns (the public API takes the `Pattern` brand).
 *
 * @internal
 */

const SLASH = 47
const STAR = 42
const DOT = 46

/** The opaque identity returned by `add`; internally it is the entry itself. */
export class Entry<A> {
  removed = false
  constructor(
    readonly owner: TopicTrie<A>,
    readonly generation: number,
    readonly id: number,
    readonly pattern: string,
    readonly value: A,
    /** The bucket the entry lives in, and the trie node holding it (undefined for exact patterns). */
    readonly bucket: Array<Entry<A>>,
    readonly node: Node<A> | undefined
  ) {}
}

class Node<A> {
  children: Map<string, Node<A>> | undefined = undefined
  star: Node<A> | undefined = undefined
  /** Patterns ending exactly at this node. */
  readonly terminal: Array<Entry<A>> = []
  /** Patterns ending with `...` right after this node: they match when at least one level remains. */
  readonly rest: Array<Entry<A>> = []
  constructor(
    readonly parent: Node<A> | undefined,
    /** Key in the parent: a literal level, or `undefined` for the `*` child. */
    readonly key: string | undefined
  ) {}

  isEmpty(): boolean {
    return (
      this.terminal.length === 0 &&
      this.rest.length === 0 &&
      this.star === undefined &&
      (this.children === undefined || this.children.size === 0)
    )
  }
}

const EMPTY: ReadonlyArray<never> = Object.freeze([])

const isStarLevel = (s: string, start: number, end: number): boolean =>
  end - start === 1 && s.charCodeAt(start) === STAR

const isEllipsisLevel = (s: string, start: number, end: number): boolean =>
  end - start === 3 && s.charCodeAt(start) === DOT && s.charCodeAt(start + 1) === DOT && s.charCodeAt(start + 2) === DOT

/** True when some level of `s` is exactly `*` or `...`. */
export const hasWildcard = (s: string): boolean => {
  let start = 1
  const n = s.length
  while (start <= n) {
    let end = s.indexOf("/", start)
    if (end === -1) end = n
    if (isStarLevel(s, start, end) || isEllipsisLevel(s, start, end)) return true
    start = end + 1
  }
  return false
}

const byId = (a: Entry<unknown>, b: Entry<unknown>): number => a.id - b.id

/** Above this many matching buckets, `compute` sorts instead of merging (the merge is O(n·k)). */
const MERGE_MAX_BUCKETS = 16

export class TopicTrie<A> {
  private readonly exact = new Map<string, Array<Entry<A>>>()
  private root = new Node<A>(undefined, undefined)
  /** Number of live entries in the trie (wildcard patterns only). */
  private wildcardCount = 0
  private count = 0
  private nextId = 0
  private generation = 0
  private readonly cache = new Map<string, ReadonlyArray<A>>()
  /** Topics that missed the cache once recently (the cache's admission filter). */
  private readonly seen = new Set<string>()
  // Scratch state reused by every cache miss, so a miss allocates only the level substrings and
  // the result array.
  private readonly levels: Array<string> = []
  private levelCount = 0
  private readonly hits: Array<Array<Entry<A>>> = []
  private readonly heads: Array<number> = []

  constructor(readonly cacheCapacity: number) {}

  get size(): number {
    return this.count
  }

  add(pattern: string, value: A): Entry<A> {
    const id = this.nextId++
    let entry: Entry<A>
    if (!hasWildcard(pattern)) {
      let bucket = this.exact.get(pattern)
      if (bucket === undefined) {
        bucket = []
        this.exact.set(pattern, bucket)
      }
      entry = new Entry(this, this.generation, id, pattern, value, bucket, undefined)
      bucket.push(entry)
    } else {
      let node = this.root
      let start = 1
      const n = pattern.length
      let bucket: Array<Entry<A>> | undefined
      while (bucket === undefined) {
        let end = pattern.indexOf("/", start)
        if (end === -1) end = n
        if (end === n && isEllipsisLevel(pattern, start, end)) {
          bucket = node.rest
          break
        }
        if (isStarLevel(pattern, start, end)) {
          node = node.star ??= new Node(node, undefined)
        } else {
          const level = pattern.slice(start, end)
          const children = (node.children ??= new Map())
          let child = children.get(level)
          if (child === undefined) {
            child = new Node(node, level)
            children.set(level, child)
          }
          node = child
        }
        if (end === n) bucket = node.terminal
        start = end + 1
      }
      entry = new Entry(this, this.generation, id, pattern, value, bucket, node)
      bucket.push(entry)
      this.wildcardCount++
    }
    this.count++
    this.cache.clear()
    return entry
  }

  remove(entry: Entry<A>): boolean {
    if (entry.owner !== this || entry.generation !== this.generation || entry.removed) return false
    entry.removed = true
    const bucket = entry.bucket
    // Buckets keep insertion order, which `match` relies on; they are usually tiny.
    bucket.splice(bucket.indexOf(entry), 1)
    if (entry.node === undefined) {
      if (bucket.length === 0) this.exact.delete(entry.pattern)
    } else {
      this.wildcardCount--
      this.prune(entry.node)
    }
    this.count--
    this.cache.clear()
    return true
  }

  /** Detaches empty nodes bottom-up so that removed subscriptions leave no dead paths to walk. */
  private prune(node: Node<A>): void {
    let current: Node<A> | undefined = node
    while (current !== undefined && current.parent !== undefined && current.isEmpty()) {
      const parent: Node<A> = current.parent
      if (current.key === undefined) parent.star = undefined
      else parent.children!.delete(current.key)
      current = parent
    }
  }

  clear(): void {
    this.exact.clear()
    this.root = new Node(undefined, undefined)
    this.wildcardCount = 0
    this.count = 0
    this.generation++
    this.cache.clear()
    this.seen.clear()
  }

  match(topic: string): ReadonlyArray<A> {
    if (this.count === 0) return EMPTY
    const cached = this.cache.get(topic)
    if (cached !== undefined) return cached
    const result = this.compute(topic)
    if (this.cacheCapacity > 0) {
      if (this.seen.has(topic)) {
        // Bounded so that a stream of distinct (possibly hostile) topics cannot grow memory; Map
        // iteration order makes the first key the oldest insertion.
        if (this.cache.size >= this.cacheCapacity) this.cache.delete(this.cache.keys().next().value!)
        // Cached results are shared between callers, so nobody may mutate them.
        this.cache.set(topic, Object.freeze(result))
      } else {
        // Admit a topic on its second miss only: one-off topics then cost a set insertion instead
        // of a cache entry that lives long enough to be promoted by the GC and then evicted.
        if (this.seen.size >= this.cacheCapacity) this.seen.clear()
        this.seen.add(topic)
      }
    }
    return result
  }

  private compute(topic: string): ReadonlyArray<A> {
    // Not a topic at all; nothing can match (and the level walk below assumes the leading slash).
    if (topic.charCodeAt(0) !== SLASH) return EMPTY
    const hits = this.hits
    hits.length = 0
    const exact = this.exact.get(topic)
    if (exact !== undefined) hits.push(exact)
    if (this.wildcardCount > 0) {
      this.split(topic)
      this.walk(this.root, 0)
    }
    let result: Array<A>
    if (hits.length === 0) return EMPTY
    if (hits.length === 1) {
      const bucket = hits[0]
      result = new Array<A>(bucket.length)
      for (let i = 0; i < bucket.length; i++) result[i] = bucket[i].value
    } else if (hits.length > MERGE_MAX_BUCKETS) {
      const all: Array<Entry<A>> = []
      for (let h = 0; h < hits.length; h++) {
        const bucket = hits[h]
        for (let i = 0; i < bucket.length; i++) all.push(bucket[i])
      }
      all.sort(byId)
      result = new Array<A>(all.length)
      for (let i = 0; i < all.length; i++) result[i] = all[i].value
    } else {
      // Each bucket is in insertion order: a k-way merge by id gives insertion order overall. k is
      // the number of matching trie nodes, usually a handful, where scanning the heads beats a sort
      // (measured: about 30 % of a cache miss went to the sort).
      const k = hits.length
      const heads = this.heads
      let total = 0
      for (let h = 0; h < k; h++) {
        heads[h] = 0
        total += hits[h].length
      }
      result = new Array<A>(total)
      for (let o = 0; o < total; o++) {
        let best = 0
        let bestId = Number.MAX_SAFE_INTEGER
        for (let h = 0; h < k; h++) {
          const bucket = hits[h]
          const at = heads[h]
          if (at < bucket.length && bucket[at].id < bestId) {
            bestId = bucket[at].id
            best = h
          }
        }
        result[o] = hits[best][heads[best]++].value
      }
    }
    hits.length = 0
    return result
  }

  private split(topic: string): void {
    const levels = this.levels
    const n = topic.length
    let count = 0
    let start = 1
    while (start <= n) {
      let end = topic.indexOf("/", start)
      if (end === -1) end = n
      levels[count++] = topic.slice(start, end)
      start = end + 1
    }
    this.levelCount = count
  }

  /**
   * Visits every node reachable by consuming levels `depth..` of the split topic. Each node stands
   * for one distinct pattern prefix, so it is reached at most once and every entry is collected at
   * most once.
   */
  private walk(node: Node<A>, depth: number): void {
    if (depth === this.levelCount) {
      if (node.terminal.length > 0) this.hits.push(node.terminal)
      return
    }
    if (node.rest.length > 0) this.hits.push(node.rest)
    if (node.children !== undefined) {
      const child = node.children.get(this.levels[depth])
      if (child !== undefined) this.walk(child, depth + 1)
    }
    if (node.star !== undefined) this.walk(node.star, depth + 1)
  }
}
