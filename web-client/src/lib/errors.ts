// Turning RPC errors into what a person can act on.

import { Code, ConnectError } from '@connectrpc/connect';

/** Errors of a form, by the request field they name (`username`, `tests[2].name`, ...). */
export type FieldErrors = Record<string, string>;

// `tests[2].name: contains '/'` -> field `tests[2].name`, message `contains '/'`.
// A map key may be quoted (`env["1X"]: not a variable name`).
const FIELD_MESSAGE =
  /^([A-Za-z_][A-Za-z0-9_]*(?:\[(?:\d+|"[^"]*"|'[^']*')\])?(?:\.[A-Za-z_][A-Za-z0-9_]*(?:\[(?:\d+|"[^"]*"|'[^']*')\])?)*): (.+)$/s;

/**
 * Splits an INVALID_ARGUMENT error into field errors. The coordinator starts
 * such messages with the field path and a colon; anything else lands under
 * the key `''` (shown above the form).
 */
export function fieldErrorsOf(err: unknown): FieldErrors {
  const ce = ConnectError.from(err);
  if (ce.code !== Code.InvalidArgument) return { '': describeError(ce) };
  const m = FIELD_MESSAGE.exec(ce.rawMessage);
  if (m === null || m[1] === undefined || m[2] === undefined) return { '': ce.rawMessage };
  return { [m[1]]: m[2] };
}

/** One line saying what went wrong, for alerts and snackbars. */
export function describeError(err: unknown): string {
  const ce = ConnectError.from(err);
  switch (ce.code) {
    case Code.Unauthenticated:
      return 'API token required: set it in Settings (the key icon in the top bar).';
    case Code.PermissionDenied:
      return `Not allowed: ${ce.rawMessage}`;
    case Code.Unavailable:
      return 'The coordinator is unreachable.';
    case Code.NotFound:
      return `Not found: ${ce.rawMessage}`;
    case Code.FailedPrecondition:
      return ce.rawMessage;
    case Code.Unimplemented:
      return `The coordinator does not offer this (${ce.rawMessage || 'unimplemented'}): it may be older than this console.`;
    default:
      return ce.rawMessage || ce.message;
  }
}

/** Whether an error means "this id does not exist". */
export function isNotFound(err: unknown): boolean {
  return err instanceof ConnectError && err.code === Code.NotFound;
}
