import { TransportError } from "../../DistributorError.js"

export const transportError = (reason: TransportError["reason"], address: string, cause: unknown): TransportError =>
  new TransportError({
    reason,
    address,
    detail: cause instanceof Error ? cause.message : String(cause),
    cause
  })
