/**
 * Topics, subscription patterns, and matching.
 *
 * A topic is an absolute path of levels: `/foo/bar/fie`. Publishers use topics; subscribers use
 * patterns, which may contain two wildcards, each standing for a whole level:
 *
 * - `*` matches exactly one level: `/foo/*` matches `/foo/x` but not `/foo` or `/foo/x/y`;
 * - `...` matches one or more trailing levels and may only be the last level: `/foo/bar/...`
 *   matches `/foo/bar/x` and `/foo/bar/x/y` but not `/foo/bar`; `/...` matches every topic.
 *
 * Matching is case-sensitive and level-exact: `/foo/bar` does not match `/foo/bar/fie`.
 *
 * Rules (violations are an `InvalidTopic` with the given `reason`):
 *
 * - not empty (`Empty`), starts with `/` (`NoLeadingSlash`);
 * - every level is non-empty, so no `//` and no trailing `/` (`EmptyLevel`);
 * - a string (`NotAString`, for untyped callers passing a number, `undefined`, …);
 * - no C0 or C1 control characters and no DEL (`ControlCharacter`);
 * - well-formed UTF-16: no unpaired surrogate (`LoneSurrogate`) — it has no UTF-8 encoding, so
 *   remote subscribers would otherwise see U+FFFD instead;
 * - at most {@link MAX_TOPIC_BYTES} (1024) bytes of UTF-8 (`TooLong`) and at most
 *   {@link MAX_TOPIC_LEVELS} (64) levels (`TooManyLevels`);
 * - a level containing `*` or `...` must be exactly that wildcard (`InvalidWildcard`: `a*b`, `x...`);
 * - topics contain no wildcard levels (`WildcardInTopic`); in a pattern `...` stands last
 *   (`EllipsisNotLast`).
 *
 * When a string breaks several rules, the reported reason is the first of: `Empty`,
 * `NoLeadingSlash`, `TooLong`, `ControlCharacter`, `LoneSurrogate`, `TooManyLevels`, then the first
 * offending level from the left.
 *
 * @since 0.1.0
 */
import type * as Brand from "effect/Brand"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"
import { InvalidTopic } from "./DistributorError.js"
import { describe } from "./internal/inputs.js"
import { type Entry, TopicTrie, hasWildcard as trieHasWildcard } from "./internal/topicTrie.js"

/**
 * Largest topic or pattern, in bytes of UTF-8.
 *
 * @since 0.1.0
 */
export const MAX_TOPIC_BYTES = 1024

/**
 * Largest number of levels in a topic or pattern.
 *
 * @since 0.1.0
 */
export const MAX_TOPIC_LEVELS = 64

/**
 * A validated topic: absolute, no wildcards.
 *
 * @since 0.1.0
 */
export type Topic = string & Brand.Brand<"Topic">

/**
 * A validated subscription pattern: a topic that may contain `*` levels and a trailing `...`.
 *
 * @since 0.1.0
 */
export type Pattern = string & Brand.Brand<"Pattern">

type Reason = InvalidTopic["reason"]

const SLASH = 47
const STAR = 42
const DOT = 46

const invalid = (topic: string, reason: Reason, detail: string): InvalidTopic =>
  new InvalidTopic({ topic, reason, detail })

const levelError = (s: string, reason: Reason, start: number, end: number, levelIndex: number): InvalidTopic => {
  const level = JSON.stringify(s.slice(start, end))
  switch (reason) {
    case "EmptyLevel":
      return invalid(
        s,
        reason,
        end === s.length
          ? `level ${levelIndex} is empty (trailing "/")`
          : `level ${levelIndex} is empty ("//" at offset ${start - 1})`
      )
    case "InvalidWildcard":
      return invalid(s, reason, `level ${levelIndex} ${level}: "*" and "..." must stand alone as a whole level`)
    case "WildcardInTopic":
      return invalid(
        s,
        reason,
        `level ${levelIndex} is the wildcard ${level}; a published topic cannot contain wildcards`
      )
    default:
      return invalid(s, reason, `level ${levelIndex} is "..." but "..." may only be the last level`)
  }
}

const notAString = (u: unknown): InvalidTopic =>
  invalid(`<${describe(u)}>`, "NotAString", `a topic must be a string, got ${describe(u)}`)

/**
 * One pass over the string: byte length, level count, control characters, lone surrogates and the
 * shape of each level. Allocates only when it reports an error.
 */
const check = (u: unknown, pattern: boolean): InvalidTopic | undefined => {
  if (typeof u !== "string") return notAString(u)
  const s = u
  const n = s.length
  if (n === 0) return invalid(s, "Empty", 'a topic needs at least one level, e.g. "/news"')
  if (s.charCodeAt(0) !== SLASH) return invalid(s, "NoLeadingSlash", 'a topic must start with "/"')
  // Every UTF-16 unit is at least one UTF-8 byte: reject huge strings before scanning them.
  if (n > MAX_TOPIC_BYTES) {
    return invalid(s, "TooLong", `at least ${n} bytes of UTF-8; the maximum is ${MAX_TOPIC_BYTES}`)
  }
  let bytes = 1
  let levels = 0
  let controlAt = -1
  let surrogateAt = -1
  // First offending level, reported only if no global rule is broken.
  let badReason: Reason | undefined
  let badStart = 0
  let badEnd = 0
  let badIndex = 0
  let start = 1
  let star = false
  let dots = 0
  let ellipsis = false
  for (let i = 1; i <= n; i++) {
    const c = i < n ? s.charCodeAt(i) : SLASH
    if (c === SLASH) {
      levels++
      if (badReason === undefined) {
        const len = i - start
        let reason: Reason | undefined
        if (len === 0) reason = "EmptyLevel"
        else if (star) reason = len !== 1 ? "InvalidWildcard" : pattern ? undefined : "WildcardInTopic"
        else if (ellipsis) {
          reason = len !== 3 ? "InvalidWildcard" : !pattern ? "WildcardInTopic" : i < n ? "EllipsisNotLast" : undefined
        }
        if (reason !== undefined) {
          badReason = reason
          badStart = start
          badEnd = i
          badIndex = levels
        }
      }
      if (i < n) bytes++
      start = i + 1
      star = false
      dots = 0
      ellipsis = false
      continue
    }
    if (c === STAR) {
      star = true
      dots = 0
    } else if (c === DOT) {
      if (++dots >= 3) ellipsis = true
    } else {
      dots = 0
    }
    if (c < 0x80) {
      bytes++
      if ((c < 0x20 || c === 0x7f) && controlAt < 0) controlAt = i
    } else if (c < 0x800) {
      bytes += 2
      if (c <= 0x9f && controlAt < 0) controlAt = i
    } else if (c >= 0xd800 && c <= 0xdfff) {
      const d = c <= 0xdbff && i + 1 < n ? s.charCodeAt(i + 1) : 0
      if (d >= 0xdc00 && d <= 0xdfff) {
        bytes += 4
        i++
      } else {
        // A lone surrogate: counted as UTF-8 encoders would write it (U+FFFD, 3 bytes).
        bytes += 3
        if (surrogateAt < 0) surrogateAt = i
      }
    } else {
      bytes += 3
    }
  }
  if (bytes > MAX_TOPIC_BYTES) {
    return invalid(s, "TooLong", `${bytes} bytes of UTF-8; the maximum is ${MAX_TOPIC_BYTES}`)
  }
  if (controlAt >= 0) {
    const code = s.charCodeAt(controlAt).toString(16).padStart(4, "0")
    return invalid(s, "ControlCharacter", `control character U+${code} at offset ${controlAt}`)
  }
  if (surrogateAt >= 0) {
    const code = s.charCodeAt(surrogateAt).toString(16).toUpperCase()
    return invalid(
      s,
      "LoneSurrogate",
      `unpaired UTF-16 surrogate U+${code} at offset ${surrogateAt}: not valid Unicode, it has no UTF-8 encoding`
    )
  }
  if (levels > MAX_TOPIC_LEVELS) {
    return invalid(s, "TooManyLevels", `${levels} levels; the maximum is ${MAX_TOPIC_LEVELS}`)
  }
  if (badReason !== undefined) return levelError(s, badReason, badStart, badEnd, badIndex)
  return undefined
}

/**
 * Checks a publish topic. Returns `undefined` when valid and allocates nothing in that case, so it
 * can run on every publish.
 *
 * @since 0.1.0
 */
export const validateTopic = (s: unknown): InvalidTopic | undefined => check(s, false)

/**
 * Checks a subscription pattern. Returns `undefined` when valid, allocation-free.
 *
 * @since 0.1.0
 */
export const validatePattern = (s: unknown): InvalidTopic | undefined => check(s, true)

/**
 * @since 0.1.0
 */
export const parseTopic = (s: unknown): Either.Either<Topic, InvalidTopic> => {
  const error = check(s, false)
  return error === undefined ? Either.right(s as Topic) : Either.left(error)
}

/**
 * @since 0.1.0
 */
export const parsePattern = (s: unknown): Either.Either<Pattern, InvalidTopic> => {
  const error = check(s, true)
  return error === undefined ? Either.right(s as Pattern) : Either.left(error)
}

/**
 * Validates a publish topic, failing with `InvalidTopic`.
 *
 * @since 0.1.0
 */
export const topic = (s: unknown): Effect.Effect<Topic, InvalidTopic> => {
  const error = check(s, false)
  return error === undefined ? Effect.succeed(s as Topic) : Effect.fail(error)
}

/**
 * Validates a subscription pattern, failing with `InvalidTopic`.
 *
 * @since 0.1.0
 */
export const pattern = (s: unknown): Effect.Effect<Pattern, InvalidTopic> => {
  const error = check(s, true)
  return error === undefined ? Effect.succeed(s as Pattern) : Effect.fail(error)
}

/**
 * True when `s` is a valid publish topic.
 *
 * @since 0.1.0
 */
export const isTopic = (s: unknown): s is Topic => check(s, false) === undefined

/**
 * True when `s` is a valid subscription pattern. Every valid topic is also a valid pattern (one
 * that matches only itself); use {@link hasWildcard} to ask whether it contains wildcards.
 *
 * @since 0.1.0
 */
export const isPattern = (s: unknown): s is Pattern => check(s, true) === undefined

/**
 * True when some level of a (valid) pattern is exactly `*` or `...`.
 *
 * @since 0.1.0
 */
export const hasWildcard: (pattern: string) => boolean = trieHasWildcard

const filterMessage = (pattern: boolean) => (s: string) => {
  const error = check(s, pattern)
  return error === undefined ? true : `${error.reason}: ${error.detail}`
}

/**
 * Schema for a publish topic; a failure message starts with the `InvalidTopic` reason.
 *
 * @since 0.1.0
 */
export const TopicSchema = Schema.String.pipe(
  Schema.filter(filterMessage(false), {
    identifier: "Topic",
    description: "an absolute topic such as /foo/bar, without wildcards"
  }),
  Schema.brand("Topic")
)

/**
 * Schema for a subscription pattern; a failure message starts with the `InvalidTopic` reason.
 *
 * @since 0.1.0
 */
export const PatternSchema = Schema.String.pipe(
  Schema.filter(filterMessage(true), {
    identifier: "Pattern",
    description: "a topic pattern such as /foo/*/bar/..., where * is one level and a trailing ... one or more"
  }),
  Schema.brand("Pattern")
)

/**
 * The levels of a topic or pattern, without the leading slash: `/a/b` → `["a", "b"]`.
 *
 * @since 0.1.0
 */
export const levels = (t: string): ReadonlyArray<string> => {
  const out: Array<string> = []
  const n = t.length
  let start = t.charCodeAt(0) === SLASH ? 1 : 0
  while (start <= n) {
    let end = t.indexOf("/", start)
    if (end === -1) end = n
    out.push(t.slice(start, end))
    start = end + 1
  }
  return out
}

/**
 * Does `pattern` match `topic`? Both are assumed valid; the check walks the two strings side by
 * side and allocates nothing. For many patterns against one topic use {@link make}.
 *
 * @since 0.1.0
 */
export const matches = (pattern: string, topic: string): boolean => {
  const pn = pattern.length
  const tn = topic.length
  // Both indices point at the "/" that starts the next level (or at the end).
  let pi = 0
  let ti = 0
  while (true) {
    if (pi >= pn) return ti >= tn
    if (ti >= tn) return false
    let pe = pattern.indexOf("/", pi + 1)
    if (pe === -1) pe = pn
    let te = topic.indexOf("/", ti + 1)
    if (te === -1) te = tn
    const plen = pe - pi - 1
    if (plen === 1 && pattern.charCodeAt(pi + 1) === STAR) {
      // one level, whatever it is
    } else if (
      plen === 3 &&
      pe === pn &&
      pattern.charCodeAt(pi + 1) === DOT &&
      pattern.charCodeAt(pi + 2) === DOT &&
      pattern.charCodeAt(pi + 3) === DOT
    ) {
      return true // at least one topic level remains (checked above)
    } else {
      if (te - ti - 1 !== plen) return false
      for (let k = 1; k <= plen; k++) {
        if (pattern.charCodeAt(pi + k) !== topic.charCodeAt(ti + k)) return false
      }
    }
    pi = pe
    ti = te
  }
}

/**
 * Identifies one entry of a {@link TopicMatcher}; pass it to `remove`.
 *
 * @since 0.1.0
 */
export interface SubscriptionKey {
  readonly pattern: Pattern
}

/**
 * An index of many subscriptions (pattern → value) answering "which subscriptions match this
 * topic?" without scanning them all.
 *
 * - `add` the same pattern twice and you get two independent entries; each is returned once.
 * - `match` returns the values of every matching entry exactly once, in insertion (`add`) order.
 *   Treat the array as read-only: results are cached per topic string and shared between callers
 *   (cached arrays are frozen). A topic enters the cache on its second miss, the cache holds
 *   `cacheCapacity` topics (oldest evicted first), and every `add`, `remove` and `clear` empties it;
 *   so repeated topics cost one hash lookup and one-off topics do not churn the cache.
 * - Without a cache hit, `match` walks only the trie nodes the topic can reach (literal child, `*`
 *   child, and `...` entries at each level) plus one hash lookup for wildcard-free patterns.
 * - `match` accepts any string: a string that is not a valid topic never throws, but what it
 *   matches is unspecified (validate with {@link validateTopic} first).
 * - Keys are bound to their matcher; `remove` of a key already removed, cleared, or from another
 *   matcher returns `false`.
 *
 * Not safe for concurrent mutation from several fibers without external coordination (it is plain
 * synchronous code, so one synchronous call is atomic).
 *
 * @since 0.1.0
 */
export interface TopicMatcher<A> {
  readonly size: number
  add(pattern: Pattern, value: A): SubscriptionKey
  remove(key: SubscriptionKey): boolean
  match(topic: string): ReadonlyArray<A>
  clear(): void
}

/**
 * @since 0.1.0
 */
export interface MatcherOptions {
  /** How many distinct topics' results to cache; 0 disables the cache. Default 4096. */
  readonly cacheCapacity?: number
}

class TopicMatcherImpl<A> implements TopicMatcher<A> {
  readonly trie: TopicTrie<A>
  constructor(cacheCapacity: number) {
    this.trie = new TopicTrie(cacheCapacity)
  }
  get size(): number {
    return this.trie.size
  }
  add(pattern: Pattern, value: A): SubscriptionKey {
    return this.trie.add(pattern, value) as unknown as SubscriptionKey
  }
  remove(key: SubscriptionKey): boolean {
    return this.trie.remove(key as unknown as Entry<A>)
  }
  match(topic: string): ReadonlyArray<A> {
    return this.trie.match(topic)
  }
  clear(): void {
    this.trie.clear()
  }
}

/**
 * Creates an empty {@link TopicMatcher}.
 *
 * @since 0.1.0
 */
export const make = <A>(options?: MatcherOptions): TopicMatcher<A> => {
  const capacity = options?.cacheCapacity ?? 4096
  return new TopicMatcherImpl<A>(Number.isFinite(capacity) && capacity > 0 ? Math.floor(capacity) : 0)
}
