import { create } from '@bufbuild/protobuf';
import { Code, ConnectError, createRouterTransport, type ServiceImpl } from '@connectrpc/connect';
import { render, screen, waitFor, within } from '@testing-library/react';
import { MemoryRouter } from 'react-router';
import { describe, expect, it } from 'vitest';
import { App } from './App';
import { createTokenStore } from './auth';
import { TestrunEventSchema, TestrunService, Test_Status, Testrun_Status } from './gen/testrunner/v1/testrun_pb';
import { aTest, aTestrun } from './test/fixtures';

function renderApp(path: string, impl: Partial<ServiceImpl<typeof TestrunService>>) {
  const transport = createRouterTransport(({ service }) => service(TestrunService, impl));
  const options = { backoff: { baseMs: 1, maxMs: 4 }, log: { notifyDelayMs: 0 } };
  return render(
    <MemoryRouter initialEntries={[path]}>
      <App transport={transport} tokens={createTokenStore(undefined)} storeOptions={options} />
    </MemoryRouter>,
  );
}

const never = (signal: AbortSignal) => new Promise((resolve) => signal.addEventListener('abort', resolve));

describe('App', () => {
  it('shows a Not Found page with a way back for unknown paths', async () => {
    renderApp('/no/such/page', {});
    expect(await screen.findByTestId('not-found')).toBeTruthy();
    expect(screen.getByRole('link', { name: 'Back to Testruns' }).getAttribute('href')).toBe('/');
  });

  it('shows not found for a Testrun id that does not exist', async () => {
    renderApp('/testruns/999999', {
      async *watchTestrun() {
        throw new ConnectError('testrun 999999 not found', Code.NotFound);
      },
    });
    expect((await screen.findByTestId('not-found')).textContent).toContain('#999999');
  });

  it('lists Testruns with status and counts', async () => {
    renderApp('/', {
      listTestruns: () => ({
        testruns: [
          aTestrun({ id: 12n, username: 'carol', status: Testrun_Status.RUNNING, counts: { total: 4, passed: 2, failed: 1, running: 1 } }),
        ],
        totalSize: 1n,
      }),
      async *watchTestruns(_req, ctx) {
        await never(ctx.signal);
      },
    });
    const row = await screen.findByTestId('testrun-row');
    expect(within(row).getByText('#12')).toBeTruthy();
    expect(within(row).getByText('carol')).toBeTruthy();
    expect(within(row).getByText('RUNNING')).toBeTruthy();
    expect(within(row).getByLabelText(/2 passed, 1 failed, 1 running, 0 queued/)).toBeTruthy();
  });

  it('shows a Testrun with its tests and the live log of the running test', async () => {
    renderApp('/testruns/7', {
      async *watchTestrun(_req, ctx) {
        yield create(TestrunEventSchema, {
          event: {
            case: 'snapshot',
            value: aTestrun({
              id: 7n,
              status: Testrun_Status.RUNNING,
              tests: [
                aTest({ id: 1n, name: 'ok.sh', status: Test_Status.PASSED, exitCode: 0, attempt: 1, runner: 'r1' }),
                aTest({ id: 2n, name: 'slow.sh', status: Test_Status.RUNNING, attempt: 1, runner: 'r2' }),
              ],
            }),
          },
        });
        yield create(TestrunEventSchema, {
          cursor: 1n,
          event: { case: 'log', value: { testId: 2n, testName: 'slow.sh', firstLine: 0n, lines: ['\x1b[32mstarting\x1b[0m'] } },
        });
        await never(ctx.signal);
      },
    });
    const rows = await screen.findAllByTestId('test-row');
    expect(rows.map((r) => r.getAttribute('data-name'))).toEqual(['ok.sh', 'slow.sh']);
    const panel = await screen.findByTestId('log-panel');
    expect(panel.getAttribute('data-test')).toBe('slow.sh');
    await waitFor(() => expect(within(panel).getByText('starting')).toBeTruthy());
    expect(within(panel).getByTestId('download-log').getAttribute('href')).toBe('/testruns/7/tests/slow.sh/log');
    expect(screen.getByRole('button', { name: 'Cancel' })).toBeTruthy();
  });
});
