// Names and colours of Testrun and test statuses.

import { Test_Status, Testrun_Status, type Testrun } from '../gen/testrunner/v1/testrun_pb';

/** MUI palette colours a status chip may use. */
export type StatusColor = 'default' | 'primary' | 'secondary' | 'error' | 'info' | 'success' | 'warning';

/** The statuses a Testrun list can be filtered by, in lifecycle order. */
export const TESTRUN_STATUSES: readonly Testrun_Status[] = [
  Testrun_Status.CREATED,
  Testrun_Status.RUNNING,
  Testrun_Status.SUCCESS,
  Testrun_Status.FAILED,
  Testrun_Status.CANCELLED,
];

/** `RUNNING`, as the API spells it. */
export function testrunStatusName(s: Testrun_Status): string {
  return Testrun_Status[s] ?? 'UNKNOWN';
}

/** Parses a status name from a URL (`?status=RUNNING`). */
export function parseTestrunStatus(name: string | null): Testrun_Status | undefined {
  if (name === null) return undefined;
  const s = TESTRUN_STATUSES.find((v) => testrunStatusName(v) === name.toUpperCase());
  return s;
}

export function testStatusName(s: Test_Status): string {
  return Test_Status[s] ?? 'UNKNOWN';
}

export function testrunStatusColor(s: Testrun_Status): StatusColor {
  switch (s) {
    case Testrun_Status.SUCCESS:
      return 'success';
    case Testrun_Status.FAILED:
      return 'error';
    case Testrun_Status.RUNNING:
      return 'info';
    case Testrun_Status.CANCELLED:
      return 'warning';
    default:
      return 'default';
  }
}

export function testStatusColor(s: Test_Status): StatusColor {
  switch (s) {
    case Test_Status.PASSED:
      return 'success';
    case Test_Status.FAILED:
    case Test_Status.TIMED_OUT:
    case Test_Status.ERROR:
      return 'error';
    case Test_Status.RUNNING:
      return 'info';
    case Test_Status.CANCELLED:
      return 'warning';
    // Passed on a retry: counts as passed, but stands out from both.
    case Test_Status.FLAKY:
      return 'secondary';
    default:
      return 'default';
  }
}

/** Tests that did not pass: what "Rerun failed" reruns. */
export const NOT_PASSED: readonly Test_Status[] = [
  Test_Status.FAILED,
  Test_Status.TIMED_OUT,
  Test_Status.ERROR,
  Test_Status.CANCELLED,
];

/** SUCCESS, FAILED and CANCELLED never change. */
export function isTerminal(s: Testrun_Status): boolean {
  return s === Testrun_Status.SUCCESS || s === Testrun_Status.FAILED || s === Testrun_Status.CANCELLED;
}

/** Whether cancelling makes sense (the API refuses it on terminal Testruns). */
export function canCancel(t: Pick<Testrun, 'status'>): boolean {
  return !isTerminal(t.status);
}
