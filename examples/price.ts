/**
 * The payload examples/publisher.ts and examples/subscriber.ts agree on (UTF-8 JSON on the wire).
 */
import { Schema } from "effect"

export const Price = Schema.Struct({
  symbol: Schema.String,
  price: Schema.Number,
  /** Publisher's clock, epoch ms. */
  at: Schema.Number
})
