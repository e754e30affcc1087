import { create, type MessageInitShape } from '@bufbuild/protobuf';
import { Code, ConnectError, createRouterTransport, type ServiceImpl } from '@connectrpc/connect';
import { describe, expect, it } from 'vitest';
import { authInterceptor } from '../auth';
import {
  TestrunEventSchema,
  TestrunService,
  Test_Status,
  Testrun_Status,
  type TestrunEvent,
} from '../gen/testrunner/v1/testrun_pb';
import { aTest, aTestrun, until } from '../test/fixtures';
import type { Connection } from './follow';
import { TestrunStore } from './TestrunStore';

const FAST = { backoff: { baseMs: 1, maxMs: 4 }, log: { notifyDelayMs: 0 } };

/** A store over a fake TestrunService: only the given methods answer. */
function storeWith(impl: Partial<ServiceImpl<typeof TestrunService>>, interceptors = [] as ReturnType<typeof authInterceptor>[]) {
  const transport = createRouterTransport(({ service }) => service(TestrunService, impl), {
    transport: { interceptors },
  });
  return new TestrunStore(transport, FAST);
}

const ev = (init: MessageInitShape<typeof TestrunEventSchema>): TestrunEvent => create(TestrunEventSchema, init);

describe('TestrunStore: watching a Testrun', () => {
  it('applies the snapshot, test, log and testrun events, then ends with the stream', async () => {
    const store = storeWith({
      async *watchTestrun(req) {
        expect(req.id).toBe(5n);
        expect(req.after).toBe(0n);
        yield ev({
          cursor: 0n,
          event: { case: 'snapshot', value: aTestrun({ id: 5n, tests: [aTest({ id: 9n, name: 'a.sh' })] }) },
        });
        yield ev({ cursor: 0n, event: { case: 'test', value: aTest({ id: 9n, name: 'a.sh', status: Test_Status.RUNNING }) } });
        yield ev({
          cursor: 2n,
          event: { case: 'log', value: { testId: 9n, testName: 'a.sh', attempt: 1, firstLine: 0n, lines: ['one', 'two'] } },
        });
        yield ev({ cursor: 2n, event: { case: 'test', value: aTest({ id: 9n, name: 'a.sh', status: Test_Status.PASSED, logLines: 2n }) } });
        yield ev({ cursor: 2n, event: { case: 'testrun', value: aTestrun({ id: 5n, status: Testrun_Status.SUCCESS }) } });
      },
    });
    const { watch, release } = store.acquireTestrun(5n);
    await until(() => watch.getState().connection === 'ended');
    const run = watch.getState().testrun;
    expect(run?.status).toBe(Testrun_Status.SUCCESS);
    // `testrun` events come without tests: the ones known are kept.
    expect(run?.tests.map((t) => [t.name, t.status])).toEqual([['a.sh', Test_Status.PASSED]]);
    expect(watch.logs.total(9n)).toBe(2);
    expect([watch.logs.line(9n, 0), watch.logs.line(9n, 1)]).toEqual(['one', 'two']);
    expect(watch.lastCursor).toBe(2n);
    release();
  });

  it('resumes a dropped stream from the last cursor without losing or repeating lines', async () => {
    const afters: bigint[] = [];
    const fromEnds: boolean[] = [];
    const running = aTestrun({
      id: 5n,
      status: Testrun_Status.RUNNING,
      tests: [aTest({ id: 9n, status: Test_Status.RUNNING })],
    });
    const store = storeWith({
      async *watchTestrun(req) {
        afters.push(req.after);
        fromEnds.push(req.fromEnd);
        if (afters.length === 1) {
          yield ev({ cursor: 0n, event: { case: 'snapshot', value: running } });
          yield ev({ cursor: 3n, event: { case: 'log', value: { testId: 9n, firstLine: 0n, lines: ['l0', 'l1', 'l2'] } } });
          throw new ConnectError('coordinator restarting', Code.Unavailable);
        }
        if (afters.length === 2) {
          // A restart the server ends cleanly: the Testrun is not finished, so call again.
          yield ev({ cursor: 3n, event: { case: 'snapshot', value: running } });
          return;
        }
        yield ev({ cursor: 3n, event: { case: 'snapshot', value: { ...running, tests: [aTest({ id: 9n, status: Test_Status.RUNNING, logLines: 5n })] } } });
        yield ev({ cursor: 5n, event: { case: 'log', value: { testId: 9n, firstLine: 3n, lines: ['l3', 'l4'] } } });
        yield ev({
          cursor: 5n,
          event: {
            case: 'snapshot',
            value: aTestrun({ id: 5n, status: Testrun_Status.SUCCESS, tests: [aTest({ id: 9n, status: Test_Status.PASSED, logLines: 5n })] }),
          },
        });
      },
    });
    const { watch, release } = store.acquireTestrun(5n);
    const seen: Connection[] = [];
    watch.subscribe(() => {
      const c = watch.getState().connection;
      if (seen.at(-1) !== c) seen.push(c);
    });
    await until(() => watch.getState().connection === 'ended');
    expect(afters).toEqual([0n, 3n, 3n]);
    // Only the first call skips stored history; reconnects resume by cursor.
    expect(fromEnds).toEqual([true, false, false]);
    expect(seen).toContain('reconnecting');
    expect(watch.logs.total(9n)).toBe(5);
    expect([0, 1, 2, 3, 4].map((i) => watch.logs.line(9n, i))).toEqual(['l0', 'l1', 'l2', 'l3', 'l4']);
    release();
  });

  it('reports NOT_FOUND as a missing Testrun and stops', async () => {
    let calls = 0;
    const store = storeWith({
      async *watchTestrun() {
        calls++;
        throw new ConnectError('testrun 999999 not found', Code.NotFound);
      },
    });
    const { watch, release } = store.acquireTestrun(999999n);
    await until(() => watch.getState().notFound);
    await new Promise((r) => setTimeout(r, 20));
    expect(calls).toBe(1);
    release();
  });

  it('shares one stream between users of the same Testrun and closes it with the last', async () => {
    const store = storeWith({
      async *watchTestrun(_req, ctx) {
        yield ev({ cursor: 0n, event: { case: 'snapshot', value: aTestrun({ status: Testrun_Status.RUNNING }) } });
        await new Promise((resolve) => ctx.signal.addEventListener('abort', resolve));
      },
    });
    const a = store.acquireTestrun(1n);
    const b = store.acquireTestrun(1n);
    expect(a.watch).toBe(b.watch);
    a.release();
    expect(store.watchedCount()).toBe(1);
    b.release();
    expect(store.watchedCount()).toBe(0);
  });

  it('pages in older log lines with GetTestLog by test id', async () => {
    const store = storeWith({
      async *watchTestrun() {
        yield ev({
          cursor: 0n,
          event: { case: 'snapshot', value: aTestrun({ id: 2n, status: Testrun_Status.FAILED, tests: [aTest({ id: 4n, logLines: 3000n })] }) },
        });
      },
      getTestLog(req) {
        expect(req.testrunId).toBe(2n);
        expect(req.test).toEqual({ case: 'testId', value: 4n });
        const lines = Array.from({ length: req.limit }, (_, i) => `#${Number(req.offset) + i}`);
        return { lines, nextOffset: req.offset + BigInt(req.limit), total: 3000n };
      },
    });
    const { watch, release } = store.acquireTestrun(2n);
    await until(() => watch.logs.total(4n) === 3000);
    watch.logs.ensure(4n, 1500, 1510);
    await until(() => watch.logs.line(4n, 1505) !== undefined);
    expect(watch.logs.line(4n, 1505)).toBe('#1505');
    release();
  });
});

describe('TestrunStore: the Testrun list', () => {
  it('lists newest first and applies created, changed and deleted events live', async () => {
    let push: ((e: MessageInitShape<typeof import('../gen/testrunner/v1/testrun_pb').TestrunsEventSchema>) => void) | undefined;
    const store = storeWith({
      listTestruns(req) {
        expect(req.pageSize).toBe(2);
        return { testruns: [aTestrun({ id: 3n }), aTestrun({ id: 2n })], totalSize: 3n, nextPageToken: 'p2' };
      },
      async *watchTestruns(_req, ctx) {
        const queue: unknown[] = [];
        let wake: (() => void) | undefined;
        push = (e) => {
          queue.push(e);
          wake?.();
        };
        while (!ctx.signal.aborted) {
          if (queue.length === 0) await new Promise<void>((r) => (wake = r));
          while (queue.length > 0) yield queue.shift() as never;
        }
      },
    });
    const view = store.openList({}, 2);
    await until(() => view.getState().testruns.length === 2 && push !== undefined);

    push?.({ event: { case: 'created', value: aTestrun({ id: 4n }) } });
    await until(() => view.getState().testruns[0]?.id === 4n);
    expect(view.getState().testruns.map((t) => t.id)).toEqual([4n, 3n]);
    expect(view.getState().totalSize).toBe(4);

    push?.({ event: { case: 'changed', value: aTestrun({ id: 3n, status: Testrun_Status.RUNNING, counts: { total: 1, running: 1 } }) } });
    await until(() => view.getState().testruns[1]?.status === Testrun_Status.RUNNING);
    expect(view.getState().testruns[1]?.counts?.running).toBe(1);

    push?.({ event: { case: 'deleted', value: 4n } });
    await until(() => view.getState().testruns.every((t) => t.id !== 4n));
    view.close();
  });

  it('sends filters and page tokens, and goes back a page', async () => {
    const tokens: string[] = [];
    const store = storeWith({
      listTestruns(req) {
        expect(req.status).toBe(Testrun_Status.FAILED);
        expect(req.username).toBe('bob');
        tokens.push(req.pageToken);
        const page = req.pageToken === '' ? 0 : 1;
        return {
          testruns: [aTestrun({ id: BigInt(10 - page), username: 'bob', status: Testrun_Status.FAILED })],
          totalSize: 2n,
          nextPageToken: page === 0 ? 'after-10' : '',
        };
      },
      async *watchTestruns(req, ctx) {
        expect(req.status).toBe(Testrun_Status.FAILED);
        await new Promise((resolve) => ctx.signal.addEventListener('abort', resolve));
      },
    });
    const view = store.openList({ status: Testrun_Status.FAILED, username: 'bob' }, 1);
    await until(() => view.getState().testruns[0]?.id === 10n);
    expect(view.getState().hasNext).toBe(true);
    view.nextPage();
    await until(() => view.getState().page === 1);
    expect(view.getState().testruns[0]?.id).toBe(9n);
    expect(view.getState().hasNext).toBe(false);
    view.prevPage();
    await until(() => view.getState().page === 0);
    expect(tokens.filter((t) => t !== '')).toEqual(['after-10']);
    view.close();
  });

  it('reads the page again after the watch reconnects', async () => {
    // Once at start, once when the stream is back.
    let lists = 0;
    let watches = 0;
    const store = storeWith({
      listTestruns() {
        lists++;
        return { testruns: [aTestrun({ id: BigInt(lists) })], totalSize: 1n };
      },
      async *watchTestruns(_req, ctx) {
        watches++;
        if (watches === 1) throw new ConnectError('restart', Code.Unavailable);
        // Connect servers send headers with the first message (tonic sends
        // them at once): one event makes the stream count as established.
        yield { event: { case: 'changed', value: aTestrun({ id: 99n }) } };
        await new Promise((resolve) => ctx.signal.addEventListener('abort', resolve));
      },
    });
    const view = store.openList({}, 50);
    await until(() => watches === 2 && view.getState().connection === 'live');
    await until(() => lists >= 2);
    view.close();
  });
});

describe('TestrunStore: actions', () => {
  it('creates a Testrun, leaving out an empty command and timeout', async () => {
    const store = storeWith({
      createTestrun(req) {
        expect(req.username).toBe('alice');
        expect(req.tests.map((t) => [t.name, t.content])).toEqual([['ok.sh', 'echo hello']]);
        expect(req.command).toBeUndefined();
        expect(req.timeoutSeconds).toBeUndefined();
        return aTestrun({ id: 77n });
      },
    });
    const run = await store.createTestrun({ username: 'alice', files: [{ name: 'ok.sh', content: 'echo hello' }], command: '  ' });
    expect(run.id).toBe(77n);
  });

  it('sends the API token as a bearer token once one is set', async () => {
    let token = '';
    const seen: (string | null)[] = [];
    const store = storeWith(
      {
        cancelTestrun(req, ctx) {
          seen.push(ctx.requestHeader.get('authorization'));
          if (ctx.requestHeader.get('authorization') !== 'Bearer s3cret') {
            throw new ConnectError('missing or wrong API token', Code.Unauthenticated);
          }
          return aTestrun({ id: req.id, status: Testrun_Status.CANCELLED });
        },
      },
      [authInterceptor({ get: () => token })],
    );
    await expect(store.cancelTestrun(1n)).rejects.toMatchObject({ code: Code.Unauthenticated });
    token = 's3cret';
    expect((await store.cancelTestrun(1n)).status).toBe(Testrun_Status.CANCELLED);
    expect(seen).toEqual([null, 'Bearer s3cret']);
  });

  it('builds the plain-text log URL with the file name escaped', () => {
    const store = storeWith({});
    expect(store.logUrl(12n, 'a b#.sh')).toBe('/testruns/12/tests/a%20b%23.sh/log');
  });
});
