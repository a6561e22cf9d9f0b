/**
 * The payload the command-line tools publish: a fixed header that lets a subscriber check order,
 * gaps, duplicates, integrity and latency, then filler bytes up to the requested size.
 *
 * Layout (big-endian):
 *
 * | offset | size | field                                                            |
 * | ------ | ---- | ---------------------------------------------------------------- |
 * | 0      | 4    | magic: `EDC1` for data, `EDCE` for an end marker                  |
 * | 4      | 4    | total payload length (detects truncation)                        |
 * | 8      | 8    | `seq`: per-publisher sequence number, from 1 (float64, exact)   |
 * | 16     | 8    | `topicSeq`: per-publisher-and-topic sequence number, from 1      |
 * | 24     | 8    | `sentAt`: send time, epoch milliseconds with sub-ms precision    |
 * | 32     | 8    | `startedAt`: when the publisher sent its first update (same clock) |
 * | 40     | …    | filler: byte i is `(seq + i) & 0xff` (detects corruption)        |
 *
 * `topicSeq` makes gap detection exact for a subscriber that sees only some of a publisher's
 * topics; `seq` still checks order across topics. `startedAt` tells a subscriber whether it was
 * there before the publisher's first update (then every update from 1 on is expected) or joined
 * late (then each topic's first update sets its baseline). An end marker (sent on every topic when a
 * publisher finishes) carries the totals: `seq` = updates published, `topicSeq` = updates on
 * that topic.
 */

export const HEADER_SIZE = 40
const MAGIC_DATA = 0x45444331 // "EDC1"
const MAGIC_END = 0x45444345 // "EDCE"

export interface Header {
  readonly end: boolean
  readonly seq: number
  readonly topicSeq: number
  readonly sentAt: number
  readonly startedAt: number
}

/** Wall-clock milliseconds with sub-millisecond precision, comparable between processes on a host. */
export const preciseNow = (): number => performance.timeOrigin + performance.now()

export const encode = (size: number, header: Header): Uint8Array => {
  const bytes = new Uint8Array(Math.max(size, HEADER_SIZE))
  const view = new DataView(bytes.buffer)
  view.setUint32(0, header.end ? MAGIC_END : MAGIC_DATA)
  view.setUint32(4, bytes.length)
  view.setFloat64(8, header.seq)
  view.setFloat64(16, header.topicSeq)
  view.setFloat64(24, header.sentAt)
  view.setFloat64(32, header.startedAt)
  const seq = header.seq
  for (let i = HEADER_SIZE; i < bytes.length; i++) bytes[i] = (seq + i) & 0xff
  return bytes
}

/**
 * `undefined`: not a payload of these tools (another application on the group); `"corrupt"`: the
 * magic matched but the length or filler did not.
 */
export const decode = (bytes: Uint8Array): Header | "corrupt" | undefined => {
  if (bytes.length < HEADER_SIZE) return undefined
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const magic = view.getUint32(0)
  if (magic !== MAGIC_DATA && magic !== MAGIC_END) return undefined
  if (view.getUint32(4) !== bytes.length) return "corrupt"
  const end = magic === MAGIC_END
  const seq = view.getFloat64(8)
  const topicSeq = view.getFloat64(16)
  // An end marker of a publisher that published nothing carries zeros.
  const min = end ? 0 : 1
  if (!Number.isSafeInteger(seq) || !Number.isSafeInteger(topicSeq) || seq < min || topicSeq < min) return "corrupt"
  for (let i = HEADER_SIZE; i < bytes.length; i++) if (bytes[i] !== ((seq + i) & 0xff)) return "corrupt"
  return { end, seq, topicSeq, sentAt: view.getFloat64(24), startedAt: view.getFloat64(32) }
}
