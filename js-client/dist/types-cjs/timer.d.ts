/**
 * Reconnect and rejoin scheduling: full-jitter exponential backoff, the
 * retry timer that counts attempts, and the parser of server retry hints.
 * @module
 */
/** A source of uniform random numbers in [0, 1), like Math.random. */
export type Random = () => number;
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
export declare function backoff(attempt: number, baseMs: number, maxMs: number, random?: Random): number;
/**
 * Reads a server's retry hint from a close frame: a close reason containing
 * `retry_after_ms=<n>` (for example "service restart retry_after_ms=2500")
 * or a JSON reason with a numeric `retry_after_ms` field. It returns the
 * hint in milliseconds, clamped to 10 minutes, or null when the reason
 * carries none or the close code is terminal (4500-4999).
 */
export declare function retryHint(code: number, reason: string | undefined): number | null;
/**
 * phoenix.js's reconnect schedule (10, 50, 100, 150, 200, 250, 500, 1000,
 * 2000 ms, then 5 s; no jitter): pass it as `reconnectAfterMs` to get
 * phoenix.js's behaviour instead of Hearth's full-jitter backoff.
 */
export declare function phoenixReconnectAfterMs(tries: number): number;
/** phoenix.js's rejoin schedule (1, 2, 5 s, then 10 s; no jitter), for `rejoinAfterMs`. */
export declare function phoenixRejoinAfterMs(tries: number): number;
/** Reports whether a close code tells the client not to reconnect (4500-4999). */
export declare function isTerminal(code: number): boolean;
/**
 * A one-shot timer that counts its attempts: `schedule()` waits the delay
 * the delay function gives for the current number of tries, then counts
 * one more try. `reset()` forgets the tries. Phoenix's Timer plays the same
 * role; the delay function is where the jitter lives.
 */
export declare class RetryTimer {
    private readonly callback;
    private readonly delayFor;
    /** Attempts scheduled since the last reset. */
    tries: number;
    private timer;
    /**
     * @param callback runs when a scheduled delay has passed
     * @param delayFor gives the delay for the next attempt; `tries` starts at 1
     */
    constructor(callback: () => void, delayFor: (tries: number) => number);
    /**
     * Schedules the callback after the next backoff delay (or after `delayMs`
     * when given) and counts one more try. It returns the delay.
     */
    schedule(delayMs?: number): number;
    /** Schedules the callback after `delayMs` without counting a try. */
    start(delayMs: number): void;
    /** Reports whether the callback is scheduled. */
    get pending(): boolean;
    /** Cancels a scheduled callback; the tries are kept. */
    cancel(): void;
    /** Cancels a scheduled callback and forgets the tries. */
    reset(): void;
}
