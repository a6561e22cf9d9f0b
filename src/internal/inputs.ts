/**
 * Checks of what untyped (JavaScript) callers can pass where the types promise otherwise: publish
 * payloads, `publishAll` entries and subscribe options. Each returns a typed error or `undefined`,
 * and allocates nothing on the valid path, so the connection can call them on every publish.
 */
import * as Schema from "effect/Schema"
import { InvalidOption, InvalidPayload } from "../DistributorError.js"

/** Largest `bufferSize` of a subscription: the same bound as `subscriberBufferSize`. */
export const MAX_SUBSCRIBER_BUFFER = 16_777_216

/** A short description of a value that never calls its own `toString`. */
export const describe = (u: unknown): string => {
  if (u === null) return "null"
  switch (typeof u) {
    case "string":
      return `the string ${JSON.stringify(u.length > 40 ? `${u.slice(0, 40)}…` : u)}`
    case "number":
    case "boolean":
    case "bigint":
    case "undefined":
      return `${typeof u} ${String(u)}`
    case "symbol":
      return "a symbol"
    case "function":
      return "a function"
    default:
      if (Array.isArray(u)) return "an array"
      if (ArrayBuffer.isView(u)) return `a ${u.constructor?.name ?? "typed array"}`
      if (u instanceof ArrayBuffer) return "an ArrayBuffer"
      return "an object"
  }
}

/** A payload must be a `string` (sent as UTF-8) or a `Uint8Array` (a `Buffer` is one). */
export const checkPayload = (topic: string, payload: unknown): InvalidPayload | undefined =>
  typeof payload === "string" || payload instanceof Uint8Array
    ? undefined
    : new InvalidPayload({
        reason: "NotStringOrBytes",
        topic: typeof topic === "string" ? topic : "",
        detail: `a payload must be a string or a Uint8Array, got ${describe(payload)}`
      })

/** A `publishAll` entry must be a `[topic, payload]` array. */
export const isEntry = (entry: unknown): entry is readonly [string, Uint8Array | string] => Array.isArray(entry)

export const notAnEntry = (entry: unknown): InvalidPayload =>
  new InvalidPayload({
    reason: "NotAnEntry",
    topic: "",
    detail: `each publishAll entry must be a [topic, payload] array, got ${describe(entry)}`
  })

/** The iterator of `publishAll`'s argument, or a typed error when it is not iterable. */
export const iterate = <A>(updates: Iterable<A>): Iterator<A> | InvalidPayload => {
  const fail = (why: string) => new InvalidPayload({ reason: "NotIterable", topic: "", detail: why })
  if (updates === null || (typeof updates !== "object" && typeof updates !== "function")) {
    return fail(`publishAll takes an iterable of [topic, payload] entries, got ${describe(updates)}`)
  }
  try {
    const make = (updates as Partial<Iterable<A>>)[Symbol.iterator]
    if (typeof make !== "function") {
      return fail(`publishAll takes an iterable of [topic, payload] entries, got ${describe(updates)}`)
    }
    const iterator = make.call(updates)
    if (iterator === null || typeof iterator !== "object" || typeof iterator.next !== "function") {
      return fail("publishAll's argument returned no iterator from [Symbol.iterator]()")
    }
    return iterator
  } catch (error) {
    return fail(
      `publishAll's argument could not be iterated: ${error instanceof Error ? error.message : describe(error)}`
    )
  }
}

const subscribeOption = (option: string, detail: string, reason: InvalidOption["reason"] = "InvalidValue") =>
  new InvalidOption({ reason, operation: "subscribe", option, detail })

const SUBSCRIBE_OPTIONS = ["bufferSize", "onLoss", "schema"]

/**
 * Subscribe options: `bufferSize` an integer 1..2^24, `onLoss` `"fail"` or `"notify"`, `schema` a
 * Schema; any other option is `UnknownOption`. An option set to `undefined` counts as absent.
 */
export const checkSubscribeOptions = (options: unknown): InvalidOption | undefined => {
  if (options === undefined) return undefined
  if (options === null || typeof options !== "object" || Array.isArray(options)) {
    return subscribeOption("", `the options must be an object, got ${describe(options)}`)
  }
  const record = options as Record<string, unknown>
  for (const key of Object.keys(record)) {
    if (!SUBSCRIBE_OPTIONS.includes(key)) {
      return subscribeOption(key, `unknown option; the options are ${SUBSCRIBE_OPTIONS.join(", ")}`, "UnknownOption")
    }
  }
  const { bufferSize, onLoss, schema } = record
  if (
    bufferSize !== undefined &&
    !(
      typeof bufferSize === "number" &&
      Number.isInteger(bufferSize) &&
      bufferSize >= 1 &&
      bufferSize <= MAX_SUBSCRIBER_BUFFER
    )
  ) {
    return subscribeOption("bufferSize", `expected an integer 1..${MAX_SUBSCRIBER_BUFFER}, got ${describe(bufferSize)}`)
  }
  if (onLoss !== undefined && onLoss !== "fail" && onLoss !== "notify") {
    return subscribeOption("onLoss", `expected "fail" or "notify", got ${describe(onLoss)}`)
  }
  if (schema !== undefined && !Schema.isSchema(schema)) {
    return subscribeOption("schema", `expected a Schema, got ${describe(schema)}`)
  }
  return undefined
}
