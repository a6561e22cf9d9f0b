import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"
import fc from "fast-check"
import { InvalidTopic } from "../src/DistributorError.js"
import * as Topic from "../src/Topic.js"

type Reason = InvalidTopic["reason"]

// --- reference implementations: obvious, split-based, slow -------------------------------------

const refLevels = (s: string): Array<string> => s.split("/").slice(1)

const refMatches = (pattern: string, topic: string): boolean => {
  const p = refLevels(pattern)
  const t = refLevels(topic)
  const go = (i: number, j: number): boolean => {
    if (i === p.length) return j === t.length
    if (p[i] === "...") return i === p.length - 1 && j < t.length
    if (j === t.length) return false
    return (p[i] === "*" || p[i] === t[j]) && go(i + 1, j + 1)
  }
  return go(0, 0)
}

// Same precedence as documented in Topic.ts.
const refReason = (s: string, pattern: boolean): Reason | undefined => {
  if (s === "") return "Empty"
  if (!s.startsWith("/")) return "NoLeadingSlash"
  if (Buffer.byteLength(s, "utf8") > Topic.MAX_TOPIC_BYTES) return "TooLong"
  // biome-ignore lint/suspicious/noControlCharactersInRegex: that is the point
  if (/[\u0000-\u001f\u007f-\u009f]/.test(s)) return "ControlCharacter"
  if (/\p{Cs}/u.test(s)) return "LoneSurrogate" // an unpaired surrogate
  const lv = refLevels(s)
  if (lv.length > Topic.MAX_TOPIC_LEVELS) return "TooManyLevels"
  for (let i = 0; i < lv.length; i++) {
    const l = lv[i]
    if (l === "") return "EmptyLevel"
    if (l.includes("*") && l !== "*") return "InvalidWildcard"
    if (l.includes("...") && l !== "...") return "InvalidWildcard"
    if ((l === "*" || l === "...") && !pattern) return "WildcardInTopic"
    if (l === "..." && i !== lv.length - 1) return "EllipsisNotLast"
  }
  return undefined
}

const reasonOf = (e: InvalidTopic | undefined): Reason | undefined => e?.reason

// --- arbitraries --------------------------------------------------------------------------------

const literal = fc.constantFrom("a", "b", "c", "ab")
const topicArb = fc.array(literal, { minLength: 1, maxLength: 5 }).map((ls) => "/" + ls.join("/"))
const patternArb = fc
  .tuple(
    fc.array(fc.oneof({ weight: 3, arbitrary: literal }, { weight: 2, arbitrary: fc.constant("*") }), {
      maxLength: 5
    }),
    fc.boolean()
  )
  .map(([ls, ellipsis]) => {
    const all = ellipsis || ls.length === 0 ? [...ls, "..."] : ls
    return "/" + all.join("/")
  })

const P = (s: string): Topic.Pattern => Either.getOrThrow(Topic.parsePattern(s))

describe("Topic", () => {
  describe("matches", () => {
    const cases: Array<[pattern: string, topic: string, expected: boolean]> = [
      ["/foo/bar", "/foo/bar", true],
      ["/foo/bar", "/foo/bar/fie", false],
      ["/foo/bar/fie", "/foo/bar", false],
      ["/foo/bar", "/Foo/bar", false],
      ["/foo/*", "/foo/x", true],
      ["/foo/*", "/foo/bar", true],
      ["/foo/*", "/foo", false],
      ["/foo/*", "/foo/x/y", false],
      ["/foo/*", "/bar/x", false],
      ["/foo/*/bar/*", "/foo/1/bar/2", true],
      ["/foo/*/bar/*", "/foo/1/baz/2", false],
      ["/foo/*/bar/*", "/foo/1/bar", false],
      ["/foo/*/bar/*", "/foo/1/bar/2/3", false],
      ["/foo/*/bar/*", "/x/1/bar/2", false],
      ["/foo/bar/...", "/foo/bar/x", true],
      ["/foo/bar/...", "/foo/bar/x/y", true],
      ["/foo/bar/...", "/foo/bar", false],
      ["/foo/bar/...", "/foo/baz/x", false],
      ["/...", "/a", true],
      ["/...", "/a/b/c/d", true],
      ["/*", "/a", true],
      ["/*", "/a/b", false],
      ["/*/...", "/a", false],
      ["/*/...", "/a/b/c", true],
      ["/ab", "/a", false],
      ["/a", "/ab", false]
    ]
    for (const [p, t, expected] of cases) {
      it(`${p} ${expected ? "matches" : "does not match"} ${t}`, () => {
        expect(Topic.isPattern(p)).toBe(true)
        expect(Topic.isTopic(t)).toBe(true)
        expect(Topic.matches(p, t)).toBe(expected)
        expect(refMatches(p, t)).toBe(expected)
        const m = Topic.make<string>()
        m.add(P(p), "x")
        expect(m.match(t)).toEqual(expected ? ["x"] : [])
      })
    }

    it("agrees with the reference on random patterns and topics", () => {
      fc.assert(
        fc.property(patternArb, topicArb, (p, t) => {
          expect(Topic.isPattern(p)).toBe(true)
          expect(Topic.matches(p, t)).toBe(refMatches(p, t))
        }),
        { seed: 42, numRuns: 5000 }
      )
    })
  })

  describe("validation", () => {
    const invalid: Array<[input: string, reason: Reason, asPattern: boolean]> = [
      ["", "Empty", true],
      ["foo/bar", "NoLeadingSlash", true],
      ["*", "NoLeadingSlash", true],
      ["/", "EmptyLevel", true],
      ["/foo/", "EmptyLevel", true],
      ["/foo//bar", "EmptyLevel", true],
      ["//", "EmptyLevel", true],
      ["/foo/*", "WildcardInTopic", false],
      ["/foo/...", "WildcardInTopic", false],
      ["/foo/.../bar", "EllipsisNotLast", true],
      ["/.../...", "EllipsisNotLast", true],
      ["/a*b", "InvalidWildcard", true],
      ["/a*b", "InvalidWildcard", false],
      ["/foo/**", "InvalidWildcard", true],
      ["/foo/*x/bar", "InvalidWildcard", true],
      ["/foo/x...", "InvalidWildcard", true],
      ["/foo/....", "InvalidWildcard", false],
      ["/foo/a...b/c", "InvalidWildcard", true],
      ["/foo\u0000", "ControlCharacter", true],
      ["/foo/\tbar", "ControlCharacter", false],
      ["/foo\u001f", "ControlCharacter", true],
      ["/foo\u007f", "ControlCharacter", true],
      ["/foo\u0085", "ControlCharacter", true],
      ["/foo\u009f", "ControlCharacter", false],
      ["/a/\ud800", "LoneSurrogate", false],
      ["/a/\ud800", "LoneSurrogate", true],
      ["/a/\udc00/b", "LoneSurrogate", true],
      ["/a\ud83d", "LoneSurrogate", false],
      ["/\ude00\ud83d/x", "LoneSurrogate", true],
      ["/a/\ud800/*", "LoneSurrogate", false],
      ["/" + "a".repeat(Topic.MAX_TOPIC_BYTES), "TooLong", true],
      ["/" + "é".repeat(512), "TooLong", false],
      ["/" + "😀".repeat(256), "TooLong", false],
      ["/a".repeat(Topic.MAX_TOPIC_LEVELS + 1), "TooManyLevels", true]
    ]
    for (const [input, reason, asPattern] of invalid) {
      it(`${JSON.stringify(input.length > 40 ? input.slice(0, 40) + "…" : input)} is ${reason} as a ${asPattern ? "pattern" : "topic"}`, () => {
        const error = asPattern ? Topic.validatePattern(input) : Topic.validateTopic(input)
        expect(error).toBeInstanceOf(InvalidTopic)
        expect(error?._tag).toBe("InvalidTopic")
        expect(error?.reason).toBe(reason)
        expect(error?.topic).toBe(input)
        expect(error?.detail.length).toBeGreaterThan(0)
        expect(error?.message).toContain(reason)
        // A rule broken by a pattern is broken by a topic too (topics are stricter).
        if (asPattern) expect(Topic.validateTopic(input)).toBeDefined()
        const parsed: Either.Either<string, InvalidTopic> = asPattern
          ? Topic.parsePattern(input)
          : Topic.parseTopic(input)
        expect(Either.isLeft(parsed) && parsed.left.reason).toBe(reason)
        expect(refReason(input, asPattern)).toBe(reason)
      })
    }

    it("accepts valid topics and patterns", () => {
      for (const t of ["/a", "/foo/bar/fie", "/Foo/BAR", "/a.b/..", "/./x", "/a b/ c", "/é/😀", "/x-y_z:1"]) {
        expect(Topic.validateTopic(t)).toBeUndefined()
        expect(Topic.validatePattern(t)).toBeUndefined()
        expect(Topic.hasWildcard(t)).toBe(false)
      }
      for (const p of ["/*", "/...", "/foo/*", "/foo/*/bar/*", "/foo/bar/...", "/*/*/...", "/a/.."]) {
        expect(Topic.validatePattern(p)).toBeUndefined()
      }
      expect(Topic.hasWildcard("/foo/*")).toBe(true)
      expect(Topic.hasWildcard("/...")).toBe(true)
      expect(Topic.hasWildcard("/a/..")).toBe(false)
    })

    it("enforces the limits exactly", () => {
      const max = "/" + "a".repeat(Topic.MAX_TOPIC_BYTES - 1)
      expect(Topic.validateTopic(max)).toBeUndefined()
      expect(Topic.validateTopic(max + "a")?.reason).toBe("TooLong")
      // 1 + 2 * 511 = 1023 bytes, plus a 2-byte character = 1025: too long by bytes, not by UTF-16 units.
      const twoByte = "/" + "é".repeat(511)
      expect(Topic.validateTopic(twoByte + "a")).toBeUndefined()
      expect(Topic.validateTopic(twoByte + "é")?.reason).toBe("TooLong")
      // 1 + 4 * 255 = 1021 bytes; one more astral character is 1025.
      const astral = "/" + "😀".repeat(255)
      expect(Topic.validateTopic(astral + "abc")).toBeUndefined()
      expect(Topic.validateTopic(astral + "😀")?.reason).toBe("TooLong")
      const maxLevels = "/a".repeat(Topic.MAX_TOPIC_LEVELS)
      expect(Topic.validateTopic(maxLevels)).toBeUndefined()
      expect(Topic.levels(maxLevels)).toHaveLength(Topic.MAX_TOPIC_LEVELS)
      expect(Topic.validateTopic(maxLevels + "/a")?.reason).toBe("TooManyLevels")
    })

    it("reports the documented precedence", () => {
      expect(Topic.validatePattern("/a//\u0000")?.reason).toBe("ControlCharacter")
      expect(Topic.validatePattern("/\u0000" + "a".repeat(2000))?.reason).toBe("TooLong")
      expect(Topic.validatePattern("/a*/.../b")?.reason).toBe("InvalidWildcard")
      expect(Topic.validatePattern("/.../a*")?.reason).toBe("EllipsisNotLast")
      expect(Topic.validatePattern("//".repeat(40))?.reason).toBe("TooManyLevels")
      expect(Topic.validatePattern("/\u0000/\ud800")?.reason).toBe("ControlCharacter")
      expect(Topic.validatePattern("/\ud800" + "/a".repeat(70))?.reason).toBe("LoneSurrogate")
    })

    it("names the lone surrogate and where it is", () => {
      const error = Topic.validateTopic("/a/\ud800")
      expect(error?.reason).toBe("LoneSurrogate")
      expect(error?.detail).toContain("U+D800 at offset 3")
      // A well-formed pair right after a lone high surrogate is still one valid character.
      expect(Topic.validateTopic("/\ud800\ud83d\ude00")?.detail).toContain("offset 1")
    })

    it("a value that is not a string is NotAString, never a TypeError", () => {
      const values: Array<unknown> = [42, undefined, null, true, 10n, Symbol("s"), {}, [], new Uint8Array(1), () => 1]
      for (const value of values) {
        for (const error of [Topic.validateTopic(value), Topic.validatePattern(value)]) {
          expect(error).toBeInstanceOf(InvalidTopic)
          expect(error?.reason).toBe("NotAString")
          expect(error?.detail).toMatch(/^a topic must be a string, got /)
        }
        expect(Topic.isTopic(value)).toBe(false)
        expect(Topic.isPattern(value)).toBe(false)
        expect(Either.isLeft(Topic.parseTopic(value))).toBe(true)
      }
      expect(Topic.validateTopic(42)?.topic).toBe("<number 42>")
      // An object's own toString is never called.
      const hostile = {
        toString: () => {
          throw new Error("called")
        }
      }
      expect(Topic.validatePattern(hostile)?.topic).toBe("<an object>")
    })

    it("agrees with a reference validator on random strings", () => {
      const token = fc.constantFrom(
        "/",
        "/",
        "/",
        "a",
        "b",
        "*",
        ".",
        "..",
        "...",
        "é",
        "😀",
        "\u0000",
        "\u007f",
        "\u0090",
        "\ud800",
        "a".repeat(300),
        "/x".repeat(20)
      )
      fc.assert(
        fc.property(fc.array(token, { maxLength: 12 }), fc.boolean(), (tokens, asPattern) => {
          const s = tokens.join("")
          const expected = refReason(s, asPattern)
          expect(reasonOf(asPattern ? Topic.validatePattern(s) : Topic.validateTopic(s))).toBe(expected)
          expect(asPattern ? Topic.isPattern(s) : Topic.isTopic(s)).toBe(expected === undefined)
        }),
        { seed: 42, numRuns: 5000 }
      )
    })

    it("levels splits without the leading slash", () => {
      expect(Topic.levels("/foo/bar/fie")).toEqual(["foo", "bar", "fie"])
      expect(Topic.levels("/foo/*/...")).toEqual(["foo", "*", "..."])
      expect(Topic.levels("/a")).toEqual(["a"])
    })
  })

  describe("Effect and Schema variants", () => {
    it.effect("topic / pattern succeed or fail with InvalidTopic", () =>
      Effect.gen(function* () {
        expect(yield* Topic.topic("/a/b")).toBe("/a/b")
        expect(yield* Topic.pattern("/a/*")).toBe("/a/*")
        const e1 = yield* Effect.flip(Topic.topic("/a/*"))
        expect(e1.reason).toBe("WildcardInTopic")
        const e2 = yield* Topic.pattern("/a/.../b").pipe(
          Effect.catchTag("InvalidTopic", (e) => Effect.succeed(e.reason))
        )
        expect(e2).toBe("EllipsisNotLast")
      })
    )

    it("TopicSchema and PatternSchema decode and name the reason on failure", () => {
      expect(Schema.decodeUnknownSync(Topic.TopicSchema)("/a/b")).toBe("/a/b")
      expect(Schema.decodeUnknownSync(Topic.PatternSchema)("/a/...")).toBe("/a/...")
      const bad = Schema.decodeUnknownEither(Topic.TopicSchema)("/a//b")
      expect(Either.isLeft(bad)).toBe(true)
      if (Either.isLeft(bad)) expect(bad.left.message).toContain("EmptyLevel")
      const wild = Schema.decodeUnknownEither(Topic.TopicSchema)("/a/*")
      if (Either.isLeft(wild)) expect(wild.left.message).toContain("WildcardInTopic")
      else expect.fail("expected a failure")
      const pat = Schema.decodeUnknownEither(Topic.PatternSchema)("/.../a")
      if (Either.isLeft(pat)) expect(pat.left.message).toContain("EllipsisNotLast")
      else expect.fail("expected a failure")
      expect(Either.isLeft(Schema.decodeUnknownEither(Topic.PatternSchema)(42))).toBe(true)
      expect(Schema.is(Topic.PatternSchema)("/x/*")).toBe(true)
      expect(Schema.is(Topic.TopicSchema)("/x/*")).toBe(false)
    })
  })

  describe("TopicMatcher", () => {
    it("keeps duplicate patterns as independent entries, in insertion order", () => {
      const m = Topic.make<string>()
      const k1 = m.add(P("/foo/*"), "first")
      m.add(P("/foo/bar"), "exact")
      const k3 = m.add(P("/foo/*"), "second")
      m.add(P("/..."), "all")
      m.add(P("/foo/bar/..."), "below")
      expect(m.size).toBe(5)
      expect(m.match("/foo/bar")).toEqual(["first", "exact", "second", "all"])
      expect(m.match("/foo/bar/x")).toEqual(["all", "below"])
      expect(m.match("/other")).toEqual(["all"])
      expect(m.remove(k1)).toBe(true)
      expect(m.remove(k1)).toBe(false)
      expect(m.size).toBe(4)
      expect(m.match("/foo/bar")).toEqual(["exact", "second", "all"])
      expect(m.remove(k3)).toBe(true)
      expect(m.match("/foo/baz")).toEqual(["all"])
      expect(k1.pattern).toBe("/foo/*")
    })

    it("invalidates its cache on add, remove and clear; results are frozen", () => {
      const m = Topic.make<number>()
      expect(m.match("/a/b")).toEqual([])
      const k = m.add(P("/a/b"), 1)
      const r0 = m.match("/a/b") // first miss: the topic is only noted
      const r1 = m.match("/a/b") // second miss: admitted to the cache
      expect(r0).toEqual([1])
      expect(r1).toEqual([1])
      expect(r1).not.toBe(r0)
      expect(m.match("/a/b")).toBe(r1) // served from the cache
      expect(Object.isFrozen(r1)).toBe(true)
      m.add(P("/a/*"), 2)
      expect(m.match("/a/b")).toEqual([1, 2])
      m.remove(k)
      expect(m.match("/a/b")).toEqual([2])
      m.clear()
      expect(m.size).toBe(0)
      expect(m.match("/a/b")).toEqual([])
      expect(m.remove(k)).toBe(false)
    })

    it("bounds its cache: the oldest topic is evicted first", () => {
      const m = Topic.make<number>({ cacheCapacity: 2 })
      m.add(P("/..."), 1)
      const cached = (t: string) => {
        m.match(t)
        return m.match(t) // second miss admits the topic
      }
      const a = cached("/a")
      cached("/b")
      expect(m.match("/a")).toBe(a) // still cached
      cached("/c") // evicts /a, the oldest insertion
      const again = m.match("/a")
      expect(again).not.toBe(a)
      expect(again).toEqual([1])
    })

    it("returns insertion order when many trie nodes match (sort fallback)", () => {
      // Every combination of "a" and "*" over 5 levels, plus "..." prefixes: 32 + 5 distinct
      // nodes all match /a/a/a/a/a. Added in a shuffled order, twice each.
      const ps: Array<string> = []
      for (let mask = 0; mask < 32; mask++) {
        ps.push("/" + [0, 1, 2, 3, 4].map((i) => (mask & (1 << i) ? "*" : "a")).join("/"))
      }
      for (let n = 0; n < 5; n++) ps.push("/" + ["a", "a", "a", "a"].slice(0, n).concat("...").join("/"))
      const shuffled = fc.sample(fc.shuffledSubarray(ps, { minLength: ps.length }), { seed: 42, numRuns: 1 })[0]
      const m = Topic.make<string>({ cacheCapacity: 0 })
      const order = [...shuffled, ...shuffled].map((p, i) => `${i}:${p}`)
      for (const v of order) m.add(P(v.slice(v.indexOf(":") + 1)), v)
      expect(m.match("/a/a/a/a/a")).toEqual(order)
      expect(m.match("/a/a/a/a/b")).toEqual(order.filter((v) => refMatches(v.slice(v.indexOf(":") + 1), "/a/a/a/a/b")))
    })

    it("clear invalidates old keys; keys are bound to their matcher", () => {
      const m = Topic.make<string>()
      const other = Topic.make<string>()
      const k = m.add(P("/a"), "a")
      expect(other.remove(k)).toBe(false)
      m.clear()
      const k2 = m.add(P("/a"), "again")
      expect(m.remove(k)).toBe(false)
      expect(m.match("/a")).toEqual(["again"])
      expect(m.remove(k2)).toBe(true)
      expect(m.size).toBe(0)
    })

    it("does not throw on strings that are not topics", () => {
      const m = Topic.make<string>()
      m.add(P("/..."), "all")
      m.add(P("/*"), "one")
      for (const s of ["", "abc", "//", "/", "/a//b/"]) expect(() => m.match(s)).not.toThrow()
      expect(m.match("")).toEqual([])
      expect(m.match("abc")).toEqual([])
    })

    it("reuses pruned paths after removal", () => {
      const m = Topic.make<string>({ cacheCapacity: 0 })
      const keys = [m.add(P("/a/*/c/..."), "x"), m.add(P("/a/*/c"), "y"), m.add(P("/a/*"), "z")]
      for (const k of keys) expect(m.remove(k)).toBe(true)
      expect(m.size).toBe(0)
      expect(m.match("/a/b/c/d")).toEqual([])
      m.add(P("/a/*/c/..."), "w")
      expect(m.match("/a/b/c/d")).toEqual(["w"])
      expect(m.match("/a/b/c")).toEqual([])
    })

    type Op =
      | { readonly _tag: "add"; readonly pattern: string }
      | { readonly _tag: "remove"; readonly index: number }
      | { readonly _tag: "removeTwice"; readonly index: number }
      | { readonly _tag: "match"; readonly topic: string }
      | { readonly _tag: "clear" }

    const opArb: fc.Arbitrary<Op> = fc.oneof(
      { weight: 4, arbitrary: patternArb.map((pattern) => ({ _tag: "add" as const, pattern })) },
      {
        weight: 1,
        arbitrary: fc.constantFrom("/a", "/a/b", "/*", "/a/...", "/...").map((pattern) => ({
          _tag: "add" as const,
          pattern
        }))
      },
      { weight: 2, arbitrary: fc.nat().map((index) => ({ _tag: "remove" as const, index })) },
      { weight: 1, arbitrary: fc.nat().map((index) => ({ _tag: "removeTwice" as const, index })) },
      { weight: 5, arbitrary: topicArb.map((topic) => ({ _tag: "match" as const, topic })) },
      { weight: 1, arbitrary: fc.constant({ _tag: "clear" as const }) }
    )

    const runModel = (ops: ReadonlyArray<Op>, cacheCapacity: number) => {
      const m = Topic.make<number>({ cacheCapacity })
      // The model: live entries in insertion order.
      let live: Array<{ readonly id: number; readonly pattern: string; readonly key: Topic.SubscriptionKey }> = []
      const dead: Array<Topic.SubscriptionKey> = []
      let nextId = 0
      for (const op of ops) {
        switch (op._tag) {
          case "add": {
            const id = nextId++
            live.push({ id, pattern: op.pattern, key: m.add(P(op.pattern), id) })
            break
          }
          case "remove":
          case "removeTwice": {
            if (live.length === 0) {
              if (dead.length > 0) expect(m.remove(dead[op.index % dead.length])).toBe(false)
              break
            }
            const [entry] = live.splice(op.index % live.length, 1)
            expect(m.remove(entry.key)).toBe(true)
            if (op._tag === "removeTwice") expect(m.remove(entry.key)).toBe(false)
            dead.push(entry.key)
            break
          }
          case "clear":
            m.clear()
            for (const e of live) dead.push(e.key)
            live = []
            break
          case "match": {
            const expected = live.filter((e) => refMatches(e.pattern, op.topic)).map((e) => e.id)
            // Twice: the second call is served from the cache (when enabled) and must agree.
            for (let i = 0; i < 2; i++) {
              const got = m.match(op.topic)
              // Insertion order is documented, so the exact sequence (hence the multiset) must agree.
              expect([...got]).toEqual(expected)
            }
            break
          }
        }
        expect(m.size).toBe(live.length)
      }
      // Every live pattern, checked against a fixed set of topics at the end.
      for (const t of ["/a", "/b", "/a/b", "/ab/c/a", "/a/b/c/ab/b", "/c/c/c/c"]) {
        expect([...m.match(t)]).toEqual(live.filter((e) => refMatches(e.pattern, t)).map((e) => e.id))
      }
    }

    it("agrees with filtering all live subscriptions (random add/remove/clear sequences)", () => {
      fc.assert(
        fc.property(fc.array(opArb, { maxLength: 120 }), (ops) => runModel(ops, 4096)),
        { seed: 42, numRuns: 400 }
      )
    })

    it("agrees with the model with a tiny cache (evictions) and with no cache", () => {
      fc.assert(
        fc.property(fc.array(opArb, { maxLength: 120 }), fc.constantFrom(0, 1, 3), (ops, capacity) =>
          runModel(ops, capacity)
        ),
        { seed: 42, numRuns: 300 }
      )
    })
  })
})
