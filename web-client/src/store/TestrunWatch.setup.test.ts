import { create } from '@bufbuild/protobuf';
import { createClient, createRouterTransport } from '@connectrpc/connect';
import { describe, expect, it } from 'vitest';
import {
  SetupSchema,
  Setup_Status,
  TestrunEventSchema,
  TestrunService,
  Testrun_Status,
  type TestrunEvent,
} from '../gen/testrunner/v1/testrun_pb';
import { DEFAULT_BACKOFF } from '../lib/backoff';
import { aTest, aTestrun } from '../test/fixtures';
import { TestrunWatch } from './TestrunWatch';

const ev = (e: TestrunEvent['event']) => create(TestrunEventSchema, { cursor: 1n, event: e });

describe('TestrunWatch set-up events', () => {
  it('adds a runner set-up, replaces it when it ends, and keeps set-ups across testrun events', () => {
    // Never started: events are applied by hand.
    const client = createClient(TestrunService, createRouterTransport(() => {}));
    const watch = new TestrunWatch(7n, client, DEFAULT_BACKOFF);
    watch.apply(ev({ case: 'snapshot', value: aTestrun({ id: 7n, tests: [aTest()] }) }));
    watch.apply(ev({ case: 'setup', value: create(SetupSchema, { runner: 'r1', status: Setup_Status.RUNNING }) }));
    watch.apply(ev({ case: 'setup', value: create(SetupSchema, { runner: 'r2', status: Setup_Status.RUNNING }) }));
    watch.apply(
      ev({
        case: 'setup',
        value: create(SetupSchema, { runner: 'r1', status: Setup_Status.FAILED, exitCode: 2, output: 'boom\n' }),
      }),
    );
    const setups = () => watch.getState().testrun?.setups.map((s) => [s.runner, Setup_Status[s.status], s.exitCode]);
    expect(setups()).toEqual([
      ['r1', 'FAILED', 2],
      ['r2', 'RUNNING', undefined],
    ]);
    // A testrun event without set-ups (and tests) keeps both.
    watch.apply(ev({ case: 'testrun', value: aTestrun({ id: 7n, status: Testrun_Status.RUNNING }) }));
    expect(setups()).toHaveLength(2);
    expect(watch.getState().testrun?.tests).toHaveLength(1);
    expect(watch.getState().testrun?.status).toBe(Testrun_Status.RUNNING);
    watch.close();
  });
});
