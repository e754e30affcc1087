// Keeps a server stream open: reconnects with jittered backoff when it drops,
// and reports the connection state the pages show ("reconnecting").

import { ConnectError } from '@connectrpc/connect';
import { backoffDelay, sleep, type BackoffOptions } from '../lib/backoff';

/**
 * - `connecting`: first attempt, nothing received yet
 * - `live`: the server answered; events flow
 * - `reconnecting`: the stream dropped; waiting or trying again
 * - `ended`: the server finished the stream and nothing more will come
 */
export type Connection = 'connecting' | 'live' | 'reconnecting' | 'ended';

/** How one stream is opened, consumed, and judged when it stops. */
export interface FollowOptions<E> {
  /** Aborting stops the loop and the current call. */
  signal: AbortSignal;
  /**
   * Opens one call. `onOpen` must be called once the server answered
   * (pass it as the call's `onHeader`): a stream may stay silent for long.
   */
  open(signal: AbortSignal, onOpen: () => void): AsyncIterable<E>;
  onEvent(event: E): void;
  onConnection(connection: Connection): void;
  /** Each time a call is established (first time and after reconnects). */
  onEstablished?(reconnect: boolean): void;
  /**
   * After the server ended a call without error: true to call again (it
   * closed early, e.g. a coordinator shutting down), false when done.
   */
  reconnectAfterEnd(): boolean;
  /** Errors that retrying cannot fix (NOT_FOUND): the loop stops. */
  isFinal(err: ConnectError): boolean;
  onFinal(err: ConnectError): void;
  /** Every error that leads to a retry, for display. */
  onRetry?(err: ConnectError | undefined): void;
  backoff: BackoffOptions;
}

/** Runs the follow loop until the stream ends for good or `signal` aborts. */
export async function follow<E>(o: FollowOptions<E>): Promise<void> {
  let failures = 0;
  let established = 0;
  o.onConnection('connecting');
  while (!o.signal.aborted) {
    let open = false;
    const onOpen = () => {
      if (open || o.signal.aborted) return;
      open = true;
      failures = 0;
      o.onConnection('live');
      o.onEstablished?.(established++ > 0);
    };
    let retryErr: ConnectError | undefined;
    try {
      for await (const event of o.open(o.signal, onOpen)) {
        onOpen();
        o.onEvent(event);
      }
      if (o.signal.aborted) return;
      if (!o.reconnectAfterEnd()) {
        o.onConnection('ended');
        return;
      }
    } catch (err) {
      if (o.signal.aborted) return;
      const ce = ConnectError.from(err);
      if (o.isFinal(ce)) {
        o.onFinal(ce);
        return;
      }
      retryErr = ce;
    }
    failures++;
    o.onConnection('reconnecting');
    o.onRetry?.(retryErr);
    try {
      await sleep(backoffDelay(failures, o.backoff), o.signal);
    } catch {
      return;
    }
  }
}
