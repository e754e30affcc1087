import { create } from '@bufbuild/protobuf';
import { createClient, createRouterTransport } from '@connectrpc/connect';
import { describe, expect, it } from 'vitest';
import { TestrunEventSchema, TestrunService, Test_Status, type TestrunEvent } from '../gen/testrunner/v1/testrun_pb';
import { DEFAULT_BACKOFF } from '../lib/backoff';
import { aTest, aTestrun, until } from '../test/fixtures';
import { TestrunWatch } from './TestrunWatch';

const ev = (cursor: bigint, e: TestrunEvent['event']) => create(TestrunEventSchema, { cursor, event: e });
const log = (cursor: bigint, attempt: number, firstLine: bigint, lines: string[]) =>
  create(TestrunEventSchema, { cursor, event: { case: 'log', value: { testId: 1n, testName: 'flaky.sh', attempt, firstLine, lines } } });

const attempts = [
  { attempt: 1, status: Test_Status.FAILED, runner: 'r1' },
  { attempt: 2, status: Test_Status.PASSED, runner: 'r2' },
];

describe('TestrunWatch attempts', () => {
  it('learns where each attempt starts from streamed lines', () => {
    const client = createClient(TestrunService, createRouterTransport(() => {}));
    const watch = new TestrunWatch(7n, client, DEFAULT_BACKOFF);
    // The first snapshot at cursor 0: no history was skipped.
    watch.apply(ev(0n, { case: 'snapshot', value: aTestrun({ id: 7n, tests: [aTest({ attempts })] }) }));
    watch.apply(log(2n, 1, 0n, ['a1', 'b1']));
    watch.apply(log(3n, 2, 2n, ['a2']));
    expect(watch.attemptRange(1n, 1, 3)).toEqual({ from: 0, to: 2 });
    expect(watch.attemptRange(1n, 2, 3)).toEqual({ from: 2, to: 3 });
    // The last attempt grows with the log.
    watch.apply(log(4n, 2, 3n, ['b2']));
    expect(watch.attemptRange(1n, 2, 4)).toEqual({ from: 2, to: 4 });
    // An attempt that printed nothing has no lines.
    expect(watch.attemptRange(1n, 3, 4)).toEqual({ from: 0, to: 0 });
  });

  it('keeps a test\'s attempts when an update leaves them out', () => {
    const client = createClient(TestrunService, createRouterTransport(() => {}));
    const watch = new TestrunWatch(7n, client, DEFAULT_BACKOFF);
    watch.apply(ev(0n, { case: 'snapshot', value: aTestrun({ id: 7n, tests: [aTest({ attempts })] }) }));
    watch.apply(ev(0n, { case: 'test', value: aTest({ cases: { total: 3 } }) }));
    expect(watch.getState().testrun?.tests[0]?.attempts).toHaveLength(2);
  });

  it('reads the skipped history once to find attempts of lines stored before it started', async () => {
    let scans = 0;
    const transport = createRouterTransport(({ service }) =>
      service(TestrunService, {
        async *watchTestrun(req) {
          scans++;
          expect(req.after).toBe(0n);
          expect(req.fromEnd).toBe(false);
          yield ev(5n, { case: 'snapshot', value: aTestrun({ id: 7n, tests: [aTest({ attempts })] }) });
          yield log(3n, 1, 0n, ['a1', 'b1', 'c1']);
          yield log(5n, 2, 3n, ['a2', 'b2']);
          // Past where the watch started: the scan stops before this.
          yield log(6n, 2, 5n, ['late']);
          throw new Error('read too far');
        },
      }),
    );
    const watch = new TestrunWatch(7n, createClient(TestrunService, transport), DEFAULT_BACKOFF);
    // Started at the end of 5 stored lines.
    watch.apply(ev(5n, { case: 'snapshot', value: aTestrun({ id: 7n, tests: [aTest({ attempts, logLines: 5n })] }) }));
    expect(watch.attemptRange(1n, 1, 5)).toBeUndefined();
    watch.scanHistory();
    watch.scanHistory();
    await until(() => watch.attemptRange(1n, 1, 5) !== undefined);
    expect(watch.attemptRange(1n, 1, 5)).toEqual({ from: 0, to: 3 });
    expect(watch.attemptRange(1n, 2, 5)).toEqual({ from: 3, to: 5 });
    expect(scans).toBe(1);
    watch.close();
  });
});
