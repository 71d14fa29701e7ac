/**
 * Reconnect and rejoin scheduling: full-jitter exponential backoff, the
 * retry timer that counts attempts, and the parser of server retry hints.
 * @module
 */

import { CLOSE, DEFAULTS } from "./constants.js"

/** A source of uniform random numbers in [0, 1), like Math.random. */
export type Random = () => number

/**
 * Returns the delay before retry number `attempt` (0 for the first retry)
 * under capped exponential backoff with full jitter, the cap applied before
 * the jitter:
 *
 *     delay = random(0, min(maxMs, baseMs * 2^attempt))
 *
 * Because every client draws its whole delay at random, a fleet that failed
 * at the same moment spreads its retries over the window instead of
 * retrying in lockstep, also once the cap is reached.
 */
export function backoff(attempt: number, baseMs: number, maxMs: number, random: Random = Math.random): number {
  const exp = Math.min(Math.max(attempt, 0), 52)
  const cap = Math.min(maxMs, baseMs * 2 ** exp)
  return Math.floor(random() * cap)
}

/**
 * Reads a server's retry hint from a close frame: a close reason containing
 * `retry_after_ms=<n>` (for example "service restart retry_after_ms=2500")
 * or a JSON reason with a numeric `retry_after_ms` field. It returns the
 * hint in milliseconds, clamped to 10 minutes, or null when the reason
 * carries none or the close code is terminal (4500-4999).
 */
export function retryHint(code: number, reason: string | undefined): number | null {
  if (!reason || isTerminal(code)) return null
  const m = /"?retry_after_ms"?\s*[=:]\s*"?(\d{1,12})/.exec(reason)
  if (!m) return null
  return Math.min(Number(m[1]), DEFAULTS.maxHintMs)
}

/**
 * phoenix.js's reconnect schedule (10, 50, 100, 150, 200, 250, 500, 1000,
 * 2000 ms, then 5 s; no jitter): pass it as `reconnectAfterMs` to get
 * phoenix.js's behaviour instead of Hearth's full-jitter backoff.
 */
export function phoenixReconnectAfterMs(tries: number): number {
  return [10, 50, 100, 150, 200, 250, 500, 1000, 2000][tries - 1] ?? 5000
}

/** phoenix.js's rejoin schedule (1, 2, 5 s, then 10 s; no jitter), for `rejoinAfterMs`. */
export function phoenixRejoinAfterMs(tries: number): number {
  return [1000, 2000, 5000][tries - 1] ?? 10000
}

/** Reports whether a close code tells the client not to reconnect (4500-4999). */
export function isTerminal(code: number): boolean {
  return code >= CLOSE.terminalMin && code <= CLOSE.terminalMax
}

/**
 * A one-shot timer that counts its attempts: `schedule()` waits the delay
 * the delay function gives for the current number of tries, then counts
 * one more try. `reset()` forgets the tries. Phoenix's Timer plays the same
 * role; the delay function is where the jitter lives.
 */
export class RetryTimer {
  /** Attempts scheduled since the last reset. */
  tries = 0
  private timer: ReturnType<typeof setTimeout> | undefined

  /**
   * @param callback runs when a scheduled delay has passed
   * @param delayFor gives the delay for the next attempt; `tries` starts at 1
   */
  constructor(
    private readonly callback: () => void,
    private readonly delayFor: (tries: number) => number,
  ) {}

  /**
   * Schedules the callback after the next backoff delay (or after `delayMs`
   * when given) and counts one more try. It returns the delay.
   */
  schedule(delayMs?: number): number {
    this.cancel()
    this.tries++
    const delay = Math.max(0, delayMs ?? this.delayFor(this.tries))
    this.start(delay)
    return delay
  }

  /** Schedules the callback after `delayMs` without counting a try. */
  start(delayMs: number): void {
    this.cancel()
    this.timer = setTimeout(() => {
      this.timer = undefined
      this.callback()
    }, delayMs)
  }

  /** Reports whether the callback is scheduled. */
  get pending(): boolean {
    return this.timer !== undefined
  }

  /** Cancels a scheduled callback; the tries are kept. */
  cancel(): void {
    if (this.timer !== undefined) clearTimeout(this.timer)
    this.timer = undefined
  }

  /** Cancels a scheduled callback and forgets the tries. */
  reset(): void {
    this.tries = 0
    this.cancel()
  }
}
