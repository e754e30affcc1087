// The runners and suite routes against a router transport: what they ask
// the API, and what they do with the answers.

import { create } from '@bufbuild/protobuf';
import { Code, ConnectError, createRouterTransport, type ServiceImpl } from '@connectrpc/connect';
import { fireEvent, render, screen, waitFor, within } from '@testing-library/react';
import { MemoryRouter } from 'react-router';
import { describe, expect, it, vi } from 'vitest';
import { App } from '../App';
import { createTokenStore } from '../auth';
import { RunnerAdminService, RunnerInfoSchema } from '../gen/testrunner/v1/admin_pb';
import { TestrunEventSchema, TestrunService, Test_Status, Testrun_Status } from '../gen/testrunner/v1/testrun_pb';
import { aTest, aTestrun } from '../test/fixtures';

function renderApp(
  path: string,
  impl: Partial<ServiceImpl<typeof TestrunService>>,
  admin: Partial<ServiceImpl<typeof RunnerAdminService>> = {},
) {
  const transport = createRouterTransport(({ service }) => {
    service(TestrunService, impl);
    service(RunnerAdminService, admin);
  });
  const options = { backoff: { baseMs: 1, maxMs: 4 }, log: { notifyDelayMs: 0 } };
  return render(
    <MemoryRouter initialEntries={[path]}>
      <App transport={transport} tokens={createTokenStore(undefined)} storeOptions={options} />
    </MemoryRouter>,
  );
}

const never = (signal: AbortSignal) => new Promise((resolve) => signal.addEventListener('abort', resolve));

describe('fleet routes', () => {
  it('/runners lists runners and shows a drained one as draining', async () => {
    let draining = false;
    const drainRunner = vi.fn((req: { id: string }) => {
      draining = true;
      return create(RunnerInfoSchema, { id: req.id, name: 'r1', slots: 2, draining: true });
    });
    renderApp(
      '/runners',
      {},
      {
        listRunners: () => ({ runners: [create(RunnerInfoSchema, { id: 'i-1', name: 'r1', slots: 2, draining })] }),
        listRunnerTokens: () => ({ tokens: [] }),
        drainRunner,
      },
    );
    const row = await screen.findByTestId('runner-row');
    fireEvent.click(within(row).getByRole('button', { name: 'Drain' }));
    fireEvent.click(within(await screen.findByRole('dialog')).getByRole('button', { name: 'Drain' }));
    await waitFor(() => expect(screen.getByTestId('runner-row').getAttribute('data-draining')).toBe('true'));
    expect(drainRunner).toHaveBeenCalledTimes(1);
    expect(drainRunner.mock.calls[0]![0].id).toBe('i-1');
  });

  it('/runners says what is wrong when the coordinator cannot list runners', async () => {
    renderApp(
      '/runners',
      {},
      {
        listRunners: () => {
          throw new ConnectError('ListRunners', Code.Unimplemented);
        },
        listRunnerTokens: () => ({ tokens: [] }),
      },
    );
    expect((await screen.findByTestId('runners-error')).textContent).toMatch(/does not offer this/);
  });

  it('/suites/:name shows the suite and the history of the test in ?test=', async () => {
    const getTestHistory = vi.fn(() => ({ suite: 'web', name: 'a.sh', samples: 1, outcomes: [] }));
    renderApp('/suites/web?test=a.sh', {
      getSuite: (req) => ({ summary: { name: req.suite, tests: 1 }, slowest: [{ name: 'a.sh', samples: 1 }] }),
      getTestHistory,
    });
    expect(await screen.findByTestId('slow-test')).toBeTruthy();
    expect((await screen.findByTestId('test-history')).getAttribute('data-name')).toBe('a.sh');
    expect(getTestHistory).toHaveBeenCalledWith(expect.objectContaining({ suite: 'web', name: 'a.sh' }), expect.anything());
  });

  it('/suites/:name says not found for a suite without history', async () => {
    renderApp('/suites/nope', {
      getSuite: () => {
        throw new ConnectError('suite: "nope" has no history', Code.NotFound);
      },
    });
    expect((await screen.findByTestId('not-found')).textContent).toContain('nope');
  });

  it('/suites lists suites', async () => {
    renderApp('/suites', { listSuites: () => ({ suites: [{ name: 'web', tests: 3 }] }) });
    expect((await screen.findByTestId('suite-row')).getAttribute('data-name')).toBe('web');
  });

  it('Rerun failed creates the new Testrun and goes to it', async () => {
    const rerunTestrun = vi.fn(() => aTestrun({ id: 8n, rerunOf: 7n }));
    renderApp('/testruns/7', {
      rerunTestrun,
      async *watchTestrun(req, ctx) {
        yield create(TestrunEventSchema, {
          event: {
            case: 'snapshot',
            value:
              req.id === 7n
                ? aTestrun({
                    id: 7n,
                    status: Testrun_Status.FAILED,
                    counts: { total: 1, failed: 1 },
                    tests: [aTest({ status: Test_Status.FAILED })],
                  })
                : aTestrun({ id: 8n, rerunOf: 7n, tests: [aTest()] }),
          },
        });
        await never(ctx.signal);
      },
    });
    fireEvent.click(await screen.findByTestId('rerun-failed'));
    expect((await screen.findByTestId('rerun-of')).getAttribute('href')).toBe('/testruns/7');
    expect(rerunTestrun).toHaveBeenCalledWith(expect.objectContaining({ id: 7n, onlyFailed: true }), expect.anything());
  });

  it('shows each attempt of a flaky test and the log lines of the picked one', async () => {
    renderApp('/testruns/7', {
      async *watchTestrun(_req, ctx) {
        yield create(TestrunEventSchema, {
          event: {
            case: 'snapshot',
            value: aTestrun({
              id: 7n,
              status: Testrun_Status.SUCCESS,
              counts: { total: 1, passed: 1, flaky: 1 },
              tests: [
                aTest({
                  id: 1n,
                  name: 'flaky.sh',
                  status: Test_Status.FLAKY,
                  attempts: [
                    { attempt: 1, status: Test_Status.FAILED, runner: 'r1', exitCode: 1 },
                    { attempt: 2, status: Test_Status.PASSED, runner: 'r2', exitCode: 0 },
                  ],
                }),
              ],
            }),
          },
        });
        yield create(TestrunEventSchema, {
          cursor: 2n,
          event: { case: 'log', value: { testId: 1n, attempt: 1, firstLine: 0n, lines: ['first try', 'boom'] } },
        });
        yield create(TestrunEventSchema, {
          cursor: 3n,
          event: { case: 'log', value: { testId: 1n, attempt: 2, firstLine: 2n, lines: ['second try'] } },
        });
        await never(ctx.signal);
      },
    });
    const rows = await screen.findAllByTestId('attempt-row');
    expect(rows.map((r) => [r.getAttribute('data-attempt'), r.getAttribute('data-status')])).toEqual([
      ['1', 'FAILED'],
      ['2', 'PASSED'],
    ]);
    const panel = screen.getByTestId('log-panel');
    await waitFor(() => expect(within(panel).getByText('second try')).toBeTruthy());
    fireEvent.click(rows[0]!);
    await waitFor(() => expect(within(screen.getByTestId('log-panel')).queryByText('second try')).toBeNull());
    expect(within(screen.getByTestId('log-panel')).getByText('boom')).toBeTruthy();
    expect(screen.getByTestId('log-attempt').textContent).toBe('attempt 1');
    fireEvent.click(screen.getAllByTestId('attempt-row')[1]!);
    await waitFor(() => expect(within(screen.getByTestId('log-panel')).queryByText('boom')).toBeNull());
    expect(within(screen.getByTestId('log-panel')).getByText('second try')).toBeTruthy();
    fireEvent.click(screen.getByTestId('attempt-all'));
    await waitFor(() => expect(within(screen.getByTestId('log-panel')).getByText('boom')).toBeTruthy());
  }, 20_000);
});
