/**
 * The protocol engine's counters, defined once: name and description. `EngineStats` (the plain
 * object the engine counts in), its zero value, the Effect metrics, `Connection.ConnectionStats`,
 * the console's JSON schema and its Prometheus text are all derived from this list (see
 * `src/internal/counters.ts` for the shell's counters that complete it). Plain data: no Effect.
 */
export const ENGINE_COUNTERS = [
  ["datagramsOut", "Datagrams sent (incl. retransmissions and control)"],
  ["bytesOut", "Bytes sent"],
  ["updatesOut", "Updates published"],
  ["datagramsIn", "Datagrams received"],
  ["bytesIn", "Bytes received"],
  ["updatesIn", "Updates delivered from remote sessions"],
  ["decodeErrors", "Datagrams dropped because they did not decode"],
  [
    "wrongChannel",
    "Datagrams dropped for arriving on the other channel (NAK/Status on the data port, data on the control port)"
  ],
  ["naksSent", "NAK packets sent"],
  ["naksReceived", "NAK packets received for local sessions"],
  ["retransmissionsSent", "Segments retransmitted"],
  ["retransmissionsReceived", "Retransmitted segments received"],
  ["lostPacketsSent", "'Lost' answers sent for evicted segments"],
  ["duplicates", "Duplicate segments dropped"],
  ["lossEvents", "Irrecoverable loss reports"],
  ["lostSegments", "Segments reported irrecoverably lost"],
  ["outOfWindow", "Data segments beyond the reorder window (dropped, re-requested later)"],
  ["statusSent", "Receiver status packets sent (flow control, presence)"],
  ["statusReceived", "Receiver status packets received"],
  ["flowControlWaits", "Data segments that waited for the receivers' flow-control window"],
  ["securityMismatch", "Datagrams dropped: security envelope missing, unexpected, or of another mode or version"],
  ["unknownKeyIds", "Secured datagrams dropped for a key id this connection does not accept"],
  ["authFailures", "Secured datagrams dropped because authentication failed (forged, corrupted or wrong key)"],
  ["replaysDropped", "Authentic datagrams dropped as replays (nonce seen before or older than the window)"],
  ["staleDropped", "Authentic datagrams dropped because their timestamp was outside freshnessMs"],
  ["implausible", "Heartbeat, Goodbye or session claims dropped as implausible (beyond the window, below data seen)"],
  ["conflicts", "Packets contradicting what was seen of their session (after Goodbye, same key, different bytes)"],
  [
    "statusRejected",
    "Status packets ignored: a receiver id heard from another host or address, or beyond the 4 096 tracked"
  ],
  ["statusUnknownSessions", "Status positions ignored for sessions this endpoint neither sends nor receives"],
  [
    "receiversStalled",
    "Receivers left out of flow control: behind data sent more than stallMs ago (dead, stuck or forged)"
  ],
  ["sessionsRejected", "New remote sessions refused: the session cap or the unconfirmed quota was full"],
  ["naksThrottled", "NAK packets answered only in part: range cap or the requester's retransmission rate"],
  ["bufferOverruns", "Pending data given up to keep reorder/reassembly memory within its bounds"]
] as const

export type EngineCounter = (typeof ENGINE_COUNTERS)[number][0]

/** Plain counters the shell turns into metrics and console snapshots. */
export type EngineStats = { [K in EngineCounter]: number }

/**
 * All counters at zero. Built with `Object.fromEntries`, which gives the object fast properties:
 * 33 keyed stores onto `{}` made it a dictionary, a hash lookup for every count.
 */
export const zeroEngineStats = (): EngineStats =>
  Object.fromEntries(ENGINE_COUNTERS.map(([name]) => [name, 0])) as EngineStats
