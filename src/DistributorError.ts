/**
 * The typed error family of effect-distributor. Every error is a `Schema.TaggedError` with a
 * `reason` (a small closed set of literals) and a human-readable `message`, so callers can
 * `Effect.catchTag` on the error and switch on the reason.
 *
 * @since 0.1.0
 */
import * as Schema from "effect/Schema"

/**
 * A topic or pattern that does not follow the topic rules (see `Topic`). A value that is not a
 * string at all (from an untyped caller) is `NotAString`, with `topic` describing the value.
 *
 * @since 0.1.0
 */
export class InvalidTopic extends Schema.TaggedError<InvalidTopic>()("InvalidTopic", {
  topic: Schema.String,
  reason: Schema.Literal(
    "Empty",
    "NoLeadingSlash",
    "EmptyLevel",
    "WildcardInTopic",
    "EllipsisNotLast",
    "InvalidWildcard",
    "ControlCharacter",
    "LoneSurrogate",
    "TooLong",
    "TooManyLevels",
    "NotAString"
  ),
  detail: Schema.String
}) {
  override get message(): string {
    return `Invalid topic ${JSON.stringify(this.topic)} (${this.reason}): ${this.detail}`
  }
}

/**
 * A configuration value that does not decode. `path` names the field (or environment variable).
 * `reason`: `Decode` (malformed or out of range), `Inconsistent` (each field valid, a rule between
 * fields fails), `UnknownField` (a field or environment variable the configuration does not have,
 * usually a typo).
 *
 * @since 0.1.0
 */
export class InvalidConfig extends Schema.TaggedError<InvalidConfig>()("InvalidConfig", {
  reason: Schema.Literal("Decode", "Inconsistent", "UnknownField"),
  path: Schema.String,
  detail: Schema.String
}) {
  override get message(): string {
    return `Invalid configuration at ${this.path || "<root>"} (${this.reason}): ${this.detail}`
  }
}

/**
 * A failure of the datagram transport: binding, joining the group, sending, or socket options.
 *
 * @since 0.1.0
 */
export class TransportError extends Schema.TaggedError<TransportError>()("TransportError", {
  reason: Schema.Literal("Bind", "Membership", "Send", "SocketOption", "Closed"),
  address: Schema.String,
  detail: Schema.String,
  cause: Schema.optional(Schema.Defect)
}) {
  override get message(): string {
    return `Transport error at ${this.address} (${this.reason}): ${this.detail}`
  }
}

/**
 * A payload that is neither a `string` nor a `Uint8Array` (from an untyped caller), or a
 * `publishAll` entry that is not a `[topic, payload]` pair (`NotAnEntry`; `NotIterable` when the
 * argument itself cannot be iterated).
 *
 * @since 0.1.0
 */
export class InvalidPayload extends Schema.TaggedError<InvalidPayload>()("InvalidPayload", {
  reason: Schema.Literal("NotStringOrBytes", "NotAnEntry", "NotIterable"),
  topic: Schema.String,
  detail: Schema.String
}) {
  override get message(): string {
    return `Invalid payload${this.topic === "" ? "" : ` on ${this.topic}`} (${this.reason}): ${this.detail}`
  }
}

/**
 * An option of an operation (e.g. `subscribe`'s `bufferSize`, `onLoss`) with a bad value
 * (`InvalidValue`) or an option the operation does not have (`UnknownOption`).
 *
 * @since 0.1.0
 */
export class InvalidOption extends Schema.TaggedError<InvalidOption>()("InvalidOption", {
  reason: Schema.Literal("InvalidValue", "UnknownOption"),
  /** The operation, e.g. `subscribe`. */
  operation: Schema.String,
  /** The option, e.g. `bufferSize`; `""` when the options argument itself is not an object. */
  option: Schema.String,
  detail: Schema.String
}) {
  override get message(): string {
    return `Invalid ${this.operation} option${this.option === "" ? "s" : ` ${this.option}`} (${this.reason}): ${this.detail}`
  }
}

/**
 * An update larger than the configured maximum update size.
 *
 * @since 0.1.0
 */
export class UpdateTooLarge extends Schema.TaggedError<UpdateTooLarge>()("UpdateTooLarge", {
  reason: Schema.Literal("ExceedsMaxUpdateSize"),
  topic: Schema.String,
  size: Schema.Number,
  maxSize: Schema.Number
}) {
  override get message(): string {
    return `Update on ${this.topic} is ${this.size} bytes, above the maximum of ${this.maxSize}`
  }
}

/**
 * An operation on a connection (or publisher) that has been closed.
 *
 * @since 0.1.0
 */
export class ConnectionClosed extends Schema.TaggedError<ConnectionClosed>()("ConnectionClosed", {
  reason: Schema.Literal("ConnectionClosed", "PublisherClosed"),
  connection: Schema.String
}) {
  override get message(): string {
    return `${this.reason === "PublisherClosed" ? "Publisher" : "Connection"} ${this.connection} is closed`
  }
}

/**
 * Why a range of updates could not be recovered.
 *
 * @since 0.1.0
 */
export const LossReason = Schema.Literal(
  /** The sender answered that the range is no longer in its retransmission cache. */
  "NotInSenderCache",
  /** NAKs were retried up to the configured limit without an answer. */
  "RetriesExhausted",
  /** The sender went silent past the sender timeout, or said goodbye, with the range still missing. */
  "SenderGone",
  /** A large update's fragments did not all arrive; the partial update was discarded. */
  "ReassemblyFailed",
  /** The receiver's reorder buffer overflowed (hostile or far-future sequence numbers). */
  "ReceiverOverrun"
)
/** @since 0.1.0 */
export type LossReason = typeof LossReason.Type

/**
 * Updates that were published but can never be delivered. Fails a subscription's stream by
 * default; with `onLoss: "notify"` it is delivered as a value instead.
 *
 * @since 0.1.0
 */
export class IrrecoverableLoss extends Schema.TaggedError<IrrecoverableLoss>()("IrrecoverableLoss", {
  reason: LossReason,
  /** The connection, as `group:port`. */
  connection: Schema.String,
  /** Remote session id, as 16 hex digits. */
  sessionId: Schema.String,
  host: Schema.String,
  application: Schema.String,
  /** First and last lost sequence number (segments, inclusive). */
  firstSeq: Schema.Number,
  lastSeq: Schema.Number,
  /** The lost update's topic, when the range is (part of) one update whose first fragment arrived. */
  topic: Schema.optional(Schema.String)
}) {
  override get message(): string {
    return (
      `Irrecoverable loss of segments ${this.firstSeq}..${this.lastSeq} from ${this.application}@${this.host} ` +
      `(session ${this.sessionId}) on ${this.connection}: ${this.reason}`
    )
  }
}

/**
 * A subscriber that did not keep up: its bounded buffer overflowed.
 *
 * @since 0.1.0
 */
export class SubscriberOverflow extends Schema.TaggedError<SubscriberOverflow>()("SubscriberOverflow", {
  reason: Schema.Literal("BufferFull"),
  pattern: Schema.String,
  capacity: Schema.Number,
  dropped: Schema.Number
}) {
  override get message(): string {
    return `Subscriber ${this.pattern} overflowed its buffer of ${this.capacity} updates; ${this.dropped} dropped`
  }
}

/**
 * A typed publisher or subscription could not encode or decode a payload with its schema.
 *
 * @since 0.1.0
 */
export class PayloadCodecError extends Schema.TaggedError<PayloadCodecError>()("PayloadCodecError", {
  reason: Schema.Literal("InvalidJson", "DecodeFailed", "EncodeFailed"),
  topic: Schema.String,
  detail: Schema.String
}) {
  override get message(): string {
    return `Payload on ${this.topic}: ${this.reason}: ${this.detail}`
  }
}

/**
 * The web console could not start: its TCP port is taken (`PortInUse`), the address could not be
 * bound (`Bind`: unknown host, address not local, permission denied), or it would listen on a
 * non-loopback address without an access token (`TokenRequired`).
 *
 * @since 0.1.0
 */
export class WebConsoleError extends Schema.TaggedError<WebConsoleError>()("WebConsoleError", {
  reason: Schema.Literal("PortInUse", "Bind", "TokenRequired"),
  /** `host:port` the console tried to listen on. */
  address: Schema.String,
  detail: Schema.String,
  cause: Schema.optional(Schema.Defect)
}) {
  override get message(): string {
    return `Web console at ${this.address} (${this.reason}): ${this.detail}`
  }
}

/**
 * The gateway could not start or serve: its TCP port is taken (`PortInUse`), the address could not
 * be bound (`Bind`), it would listen on a non-loopback address without a token (`TokenRequired`),
 * or a connection it was asked to serve is not open (`NoConnection`). On the client side
 * (`GatewayClient`): another socket took this client's name over (`TakenOver`), or the client
 * cannot go on (`Refused`: protocol version, a URL the WebSocket refuses, reconnection attempts
 * exhausted, the client closed) — or, failing one subscription only, the gateway refused that
 * subscription (too many, unknown connection).
 *
 * @since 0.1.0
 */
export class GatewayError extends Schema.TaggedError<GatewayError>()("GatewayError", {
  reason: Schema.Literal("PortInUse", "Bind", "TokenRequired", "NoConnection", "TakenOver", "Refused"),
  /** `host:port` of the gateway (server side) or its URL (client side). */
  address: Schema.String,
  detail: Schema.String,
  cause: Schema.optional(Schema.Defect)
}) {
  override get message(): string {
    return `Gateway at ${this.address} (${this.reason}): ${this.detail}`
  }
}

/**
 * Updates a gateway client can never receive, as an exact range of its own sequence numbers (the
 * gateway numbers everything it sends one client from 1). `reason`:
 * - `SlowConsumer`: the client stayed connected but did not read fast enough; its buffer bounds
 *   (`replayMaxUpdates` / `replayMaxBytes`) were exceeded and the oldest unsent updates dropped;
 * - `ReplayOverflow`: while it was disconnected, more arrived than the replay buffer holds;
 * - `Expired`: it came back after `resumeWindowMs`; its session had been discarded;
 * - `SessionUnknown`: the gateway has no record of its session (restarted, or forgot the name):
 *   what was published since `firstSeq - 1` is unknown, `lastSeq` is absent.
 *
 * @since 0.1.0
 */
export class GatewayLoss extends Schema.TaggedError<GatewayLoss>()("GatewayLoss", {
  reason: Schema.Literal("SlowConsumer", "ReplayOverflow", "Expired", "SessionUnknown"),
  /** The client's name. */
  client: Schema.String,
  /** First and last lost client sequence number (inclusive). */
  firstSeq: Schema.Number,
  lastSeq: Schema.optional(Schema.Number)
}) {
  override get message(): string {
    const range = this.lastSeq === undefined ? `${this.firstSeq}..(unknown)` : `${this.firstSeq}..${this.lastSeq}`
    return `Gateway client ${this.client} lost updates ${range}: ${this.reason}`
  }
}

/** @since 0.1.0 */
export type DistributorError =
  | InvalidTopic
  | InvalidConfig
  | InvalidPayload
  | InvalidOption
  | TransportError
  | UpdateTooLarge
  | ConnectionClosed
  | IrrecoverableLoss
  | SubscriberOverflow
  | PayloadCodecError
  | WebConsoleError
  | GatewayError
  | GatewayLoss
