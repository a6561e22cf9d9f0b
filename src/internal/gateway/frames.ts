/**
 * The gateway's WebSocket protocol (docs/PROTOCOL.md "Gateway"): control messages are JSON text
 * frames, checked with Schemas; updates and publishes are binary frames, so payloads are never
 * base64'd. Shared by the server and the client, so no `node:` imports and no `Buffer` here: the
 * client must bundle for a browser.
 */
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"

/** Protocol version sent in `hello` and `welcome`. */
export const VERSION = 1

/** Binary frame types (first byte). */
export const UPDATE = 0x01
export const PUBLISH = 0x02

/** WebSocket close codes the gateway uses (1000-1015 are RFC 6455's; 4000-4999 are ours). */
export const Close = {
  Normal: 1000,
  GoingAway: 1001,
  ProtocolError: 1002,
  PolicyViolation: 1008,
  TooBig: 1009,
  TryAgainLater: 1013,
  TakenOver: 4001,
  Expired: 4002
} as const

// ---- client → server ---------------------------------------------------------------------------

const Id = Schema.Int.pipe(Schema.between(0, 2 ** 31 - 1))
const Seq = Schema.Int.pipe(Schema.between(0, Number.MAX_SAFE_INTEGER))

/** Client names: what `hello` may carry (printable, no control characters). */
export const MAX_NAME_LENGTH = 200
export const ClientName = Schema.String.pipe(
  Schema.minLength(1),
  Schema.maxLength(MAX_NAME_LENGTH),
  // biome-ignore lint/suspicious/noControlCharactersInRegex: rejecting control characters is the point
  Schema.pattern(/^[^\u0000-\u001f\u007f]+$/)
)

export const Hello = Schema.Struct({
  type: Schema.Literal("hello"),
  version: Schema.Int,
  name: ClientName,
  /** The last client sequence number received in an earlier socket of this session (0: none). */
  resume: Schema.optional(Seq)
})
export const Subscribe = Schema.Struct({
  type: Schema.Literal("subscribe"),
  id: Id,
  pattern: Schema.String,
  /** Index into `welcome.connections`; default 0. */
  connection: Schema.optional(Schema.Int)
})
export const Unsubscribe = Schema.Struct({ type: Schema.Literal("unsubscribe"), id: Id })
export const Ack = Schema.Struct({ type: Schema.Literal("ack"), seq: Seq })
export const Flush = Schema.Struct({ type: Schema.Literal("flush"), id: Id })

export const ClientMessage = Schema.Union(Hello, Subscribe, Unsubscribe, Ack, Flush)
export type ClientMessage = typeof ClientMessage.Type

// ---- server → client ---------------------------------------------------------------------------

export const ConnectionInfo = Schema.Struct({ key: Schema.String, maxUpdateSize: Schema.Number })

export const Welcome = Schema.Struct({
  type: Schema.Literal("welcome"),
  version: Schema.Number,
  name: Schema.String,
  /** True when an existing session was resumed (its subscriptions kept). */
  resumed: Schema.Boolean,
  /** Sequence number of the next sequenced frame (after any `gap` that follows). */
  next: Schema.Number,
  /** Publish frames of this session handed to the connection so far. */
  published: Schema.Number,
  /** Subscription ids the session holds. */
  subscriptions: Schema.Array(Schema.Number),
  connections: Schema.Array(ConnectionInfo),
  limits: Schema.Struct({
    maxFrameBytes: Schema.Number,
    maxSubscriptions: Schema.Number,
    publishWindowBytes: Schema.Number
  })
})
export type Welcome = typeof Welcome.Type

export const GapReason = Schema.Literal("SlowConsumer", "ReplayOverflow", "Expired", "SessionUnknown")
export type GapReason = typeof GapReason.Type

export const Gap = Schema.Struct({
  type: Schema.Literal("gap"),
  reason: GapReason,
  first: Schema.Number,
  /** Absent for `SessionUnknown`: then the numbering continues at `first`. */
  last: Schema.optional(Schema.Number)
})
export const LossFrame = Schema.Struct({
  type: Schema.Literal("loss"),
  seq: Schema.Number,
  connection: Schema.String,
  reason: Schema.String,
  sessionId: Schema.String,
  senderIndex: Schema.Number,
  host: Schema.String,
  application: Schema.String,
  firstSeq: Schema.Number,
  lastSeq: Schema.Number,
  topic: Schema.optional(Schema.String)
})
export const OverflowFrame = Schema.Struct({
  type: Schema.Literal("overflow"),
  seq: Schema.Number,
  connection: Schema.String,
  capacity: Schema.Number,
  dropped: Schema.Number
})
export const Subscribed = Schema.Struct({ type: Schema.Literal("subscribed"), id: Schema.Number })
export const PubAck = Schema.Struct({ type: Schema.Literal("pubAck"), count: Schema.Number })
export const Flushed = Schema.Struct({ type: Schema.Literal("flushed"), id: Schema.Number })

export const ErrorCode = Schema.Literal(
  "MalformedFrame",
  "UnknownType",
  "FrameTooLarge",
  "HelloRequired",
  "DuplicateHello",
  "UnsupportedVersion",
  "TooManyClients",
  "ResumeAhead",
  "InvalidPattern",
  "InvalidTopic",
  "UpdateTooLarge",
  "UnknownConnection",
  "DuplicateId",
  "UnknownId",
  "TooManySubscriptions",
  "PublishWindowExceeded",
  "PublishFailed",
  "TooManyErrors",
  "TakenOver"
)
export type ErrorCode = typeof ErrorCode.Type

export const ErrorFrame = Schema.Struct({
  type: Schema.Literal("error"),
  code: ErrorCode,
  detail: Schema.String,
  /** The subscription (or flush) id the error is about. */
  id: Schema.optional(Schema.Number)
})
export type ErrorFrame = typeof ErrorFrame.Type

export const ServerMessage = Schema.Union(
  Welcome,
  Gap,
  LossFrame,
  OverflowFrame,
  Subscribed,
  PubAck,
  Flushed,
  ErrorFrame
)
export type ServerMessage = typeof ServerMessage.Type

const parseJson =
  <A, I>(schema: Schema.Schema<A, I>) =>
  (text: string): A | undefined => {
    let json: unknown
    try {
      json = JSON.parse(text)
    } catch {
      return undefined
    }
    const decoded = decode(schema)(json)
    return Either.isRight(decoded) ? decoded.right : undefined
  }
const decoders = new WeakMap<object, (u: unknown) => Either.Either<any, unknown>>()
const decode = <A, I>(schema: Schema.Schema<A, I>): ((u: unknown) => Either.Either<A, unknown>) => {
  let d = decoders.get(schema)
  if (d === undefined) {
    d = Schema.decodeUnknownEither(schema, { onExcessProperty: "ignore" })
    decoders.set(schema, d)
  }
  return d
}

/** A client's text frame, or undefined when it is not JSON or not one of the messages. */
export const parseClientMessage: (text: string) => ClientMessage | undefined = parseJson(ClientMessage)
/** A server's text frame, or undefined when it is not JSON or not one of the messages. */
export const parseServerMessage: (text: string) => ServerMessage | undefined = parseJson(ServerMessage)

/** The `type` of a JSON text frame, when it has one (to tell an unknown type from a malformed frame). */
export const typeOf = (text: string): string | undefined => {
  try {
    const json: unknown = JSON.parse(text)
    return typeof json === "object" && json !== null && typeof (json as any).type === "string"
      ? (json as any).type
      : undefined
  } catch {
    return undefined
  }
}

// ---- binary frames -------------------------------------------------------------------------------

const encoder = new TextEncoder()
// fatal: a frame with invalid UTF-8 is malformed, not silently repaired.
const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true })
const TWO_32 = 2 ** 32

/** Bytes of the fixed part of an update frame. */
export const UPDATE_HEADER = 24

export interface UpdateSource {
  readonly sessionId: bigint
  readonly senderIndex: number
  readonly host: string
  readonly application: string
}

/**
 * An update frame. Its client sequence number is implicit: one more than the previous sequenced
 * frame on the socket. That keeps the frame the same for every client, so the gateway encodes it
 * once and sends the same bytes to all of them.
 *
 * ```
 * 0  u8  type 0x01          2  u16 senderIndex     12 u64 sequence (segment that completed it)
 * 1  u8  flags (0)          4  u64 sessionId       20 u8 host bytes, 21 u8 application bytes, 22 u16 topic bytes
 * 24 host, application, topic (UTF-8), then the payload to the end of the frame
 * ```
 */
export const encodeUpdate = (
  source: UpdateSource,
  sourceBytes: { readonly host: Uint8Array; readonly application: Uint8Array },
  sequence: number,
  topic: Uint8Array,
  payload: Uint8Array
): Uint8Array => {
  const { application, host } = sourceBytes
  const frame = new Uint8Array(UPDATE_HEADER + host.length + application.length + topic.length + payload.length)
  const view = new DataView(frame.buffer)
  frame[0] = UPDATE
  view.setUint16(2, source.senderIndex)
  view.setBigUint64(4, source.sessionId)
  view.setUint32(12, Math.floor(sequence / TWO_32))
  view.setUint32(16, sequence >>> 0)
  frame[20] = host.length
  frame[21] = application.length
  view.setUint16(22, topic.length)
  let o = UPDATE_HEADER
  frame.set(host, o)
  o += host.length
  frame.set(application, o)
  o += application.length
  frame.set(topic, o)
  o += topic.length
  frame.set(payload, o)
  return frame
}

/** Host and application as UTF-8, at most 255 bytes each (the engine's own limit). */
export const encodeSourceBytes = (source: {
  readonly host: string
  readonly application: string
}): { readonly host: Uint8Array; readonly application: Uint8Array } => ({
  host: encoder.encode(source.host).subarray(0, 255),
  application: encoder.encode(source.application).subarray(0, 255)
})

export interface DecodedUpdate {
  readonly sessionId: bigint
  readonly senderIndex: number
  readonly sequence: number
  readonly host: string
  readonly application: string
  readonly topic: string
  readonly payload: Uint8Array
}

/** An update frame, or undefined when it is truncated or its strings are not UTF-8. */
export const decodeUpdate = (frame: Uint8Array): DecodedUpdate | undefined => {
  if (frame.length < UPDATE_HEADER || frame[0] !== UPDATE) return undefined
  const view = new DataView(frame.buffer, frame.byteOffset, frame.byteLength)
  const hostLen = frame[20]
  const appLen = frame[21]
  const topicLen = view.getUint16(22)
  const payloadAt = UPDATE_HEADER + hostLen + appLen + topicLen
  if (payloadAt > frame.length) return undefined
  try {
    const host = decoder.decode(frame.subarray(UPDATE_HEADER, UPDATE_HEADER + hostLen))
    const application = decoder.decode(frame.subarray(UPDATE_HEADER + hostLen, UPDATE_HEADER + hostLen + appLen))
    const topic = decoder.decode(frame.subarray(payloadAt - topicLen, payloadAt))
    return {
      senderIndex: view.getUint16(2),
      sessionId: view.getBigUint64(4),
      sequence: view.getUint32(12) * TWO_32 + view.getUint32(16),
      host,
      application,
      topic,
      payload: frame.subarray(payloadAt)
    }
  } catch {
    return undefined
  }
}

/** Bytes of the fixed part of a publish frame. */
export const PUBLISH_HEADER = 4

/**
 * A publish frame: `u8 0x02, u8 connection index, u16 topic bytes, topic (UTF-8), payload`.
 */
export const encodePublish = (connection: number, topic: Uint8Array, payload: Uint8Array): Uint8Array => {
  const frame = new Uint8Array(PUBLISH_HEADER + topic.length + payload.length)
  frame[0] = PUBLISH
  frame[1] = connection
  frame[2] = topic.length >>> 8
  frame[3] = topic.length & 0xff
  frame.set(topic, PUBLISH_HEADER)
  frame.set(payload, PUBLISH_HEADER + topic.length)
  return frame
}

export interface DecodedPublish {
  readonly connection: number
  readonly topic: string
  readonly payload: Uint8Array
}

/** A publish frame, or undefined when it is truncated or its topic is not UTF-8. */
export const decodePublish = (frame: Uint8Array): DecodedPublish | undefined => {
  if (frame.length < PUBLISH_HEADER || frame[0] !== PUBLISH) return undefined
  const topicLen = (frame[2] << 8) | frame[3]
  const payloadAt = PUBLISH_HEADER + topicLen
  if (payloadAt > frame.length) return undefined
  try {
    const topic = decoder.decode(frame.subarray(PUBLISH_HEADER, payloadAt))
    return { connection: frame[1], topic, payload: frame.subarray(payloadAt) }
  } catch {
    return undefined
  }
}

export const utf8 = (s: string): Uint8Array => encoder.encode(s)
