import { create } from '@bufbuild/protobuf';
import { createClient, createRouterTransport } from '@connectrpc/connect';
import { describe, expect, it } from 'vitest';
import {
  SetupSchema,
  Setup_Status,
  TestrunEventSchema,
  TestrunService,
  Test_Status,
  Testrun_Status,
  type TestrunEvent,
} from '../gen/testrunner/v1/testrun_pb';
import { DEFAULT_BACKOFF } from '../lib/backoff';
import { aTest, aTestrun, until } from '../test/fixtures';
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

describe('TestrunWatch workspace details', () => {
  it('reads the workspace and set-ups with GetTestrun when the stream leaves them out, and again as tests start', async () => {
    let setups = [create(SetupSchema, { runner: 'r1', status: Setup_Status.PASSED, output: 'installed\n' })];
    let reads = 0;
    const transport = createRouterTransport(({ service }) => {
      service(TestrunService, {
        getTestrun: () => {
          reads++;
          return aTestrun({
            id: 7n,
            workspace: { digest: { hash: 'c'.repeat(64), sizeBytes: 80n }, files: 3n, bytes: 100n },
            setup: 'make',
            env: { CI: 'true' },
            setups,
          });
        },
      });
    });
    const watch = new TestrunWatch(7n, createClient(TestrunService, transport), DEFAULT_BACKOFF);
    // The stream's snapshot has no workspace details.
    watch.apply(ev({ case: 'snapshot', value: aTestrun({ id: 7n, tests: [aTest({ id: 1n })] }) }));
    await until(() => watch.getState().testrun?.workspace !== undefined);
    const run = () => watch.getState().testrun!;
    expect(run().setup).toBe('make');
    expect(run().env).toEqual({ CI: 'true' });
    expect(run().setups.map((s) => s.runner)).toEqual(['r1']);

    // A test starts on r2, whose set-up is not known yet: read again.
    setups = [...setups, create(SetupSchema, { runner: 'r2', status: Setup_Status.PASSED })];
    watch.apply(ev({ case: 'test', value: aTest({ id: 1n, runner: 'r2', status: Test_Status.RUNNING }) }));
    await until(() => run().setups.length === 2);
    // A test on r1, whose set-up already ended, does not cause a read.
    const before = reads;
    watch.apply(ev({ case: 'test', value: aTest({ id: 1n, runner: 'r1', status: Test_Status.PASSED }) }));
    expect(reads).toBe(before);
    // A later snapshot (a reconnect) keeps what was read.
    watch.apply(ev({ case: 'snapshot', value: aTestrun({ id: 7n, tests: [aTest({ id: 1n })] }) }));
    expect(run().workspace?.files).toBe(3n);
    expect(run().setups).toHaveLength(2);
    watch.close();
  });

  it('stops reading for a Testrun without a workspace', async () => {
    let reads = 0;
    const transport = createRouterTransport(({ service }) => {
      service(TestrunService, {
        getTestrun: () => {
          reads++;
          return aTestrun({ id: 8n });
        },
      });
    });
    const watch = new TestrunWatch(8n, createClient(TestrunService, transport), DEFAULT_BACKOFF);
    watch.apply(ev({ case: 'snapshot', value: aTestrun({ id: 8n, tests: [aTest({ id: 1n })] }) }));
    // Wait until the answer (no workspace) is taken in.
    await until(() => (watch as unknown as { noWorkspace: boolean }).noWorkspace);
    expect(reads).toBe(1);
    watch.apply(ev({ case: 'test', value: aTest({ id: 1n, runner: 'r2', status: Test_Status.ERROR }) }));
    watch.apply(ev({ case: 'testrun', value: aTestrun({ id: 8n }) }));
    expect(reads).toBe(1);
    watch.close();
  });
});

describe('TestrunWatch with a coordinator that streams workspace details', () => {
  it('does not read them with GetTestrun when the snapshot carries the workspace', async () => {
    let reads = 0;
    const transport = createRouterTransport(({ service }) => {
      service(TestrunService, {
        getTestrun: () => {
          reads++;
          return aTestrun({ id: 9n });
        },
      });
    });
    const watch = new TestrunWatch(9n, createClient(TestrunService, transport), DEFAULT_BACKOFF);
    const ws = { digest: { hash: 'd'.repeat(64), sizeBytes: 80n }, files: 1n, bytes: 2n };
    watch.apply(ev({ case: 'snapshot', value: aTestrun({ id: 9n, workspace: ws, tests: [aTest({ id: 1n })] }) }));
    watch.apply(ev({ case: 'test', value: aTest({ id: 1n, runner: 'r1', status: Test_Status.RUNNING }) }));
    watch.apply(ev({ case: 'setup', value: create(SetupSchema, { runner: 'r1', status: Setup_Status.PASSED }) }));
    watch.apply(ev({ case: 'testrun', value: aTestrun({ id: 9n, status: Testrun_Status.RUNNING }) }));
    expect(watch.getState().testrun?.workspace?.files).toBe(1n);
    expect(watch.getState().testrun?.setups.map((s) => s.runner)).toEqual(['r1']);
    expect(reads).toBe(0);
    watch.close();
  });
});
