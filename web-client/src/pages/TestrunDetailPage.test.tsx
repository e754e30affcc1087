import { fireEvent, render, screen, waitFor, within } from '@testing-library/react';
import { MemoryRouter } from 'react-router';
import { describe, expect, it, vi } from 'vitest';
import { Test_Status, Testrun_Status } from '../gen/testrunner/v1/testrun_pb';
import type { TestrunWatchState } from '../store/TestrunStore';
import { aTest, aTestrun } from '../test/fixtures';
import { TestrunDetailPage, type TestrunDetailPageProps } from './TestrunDetailPage';

function renderPage(state: TestrunWatchState, overrides: Partial<TestrunDetailPageProps> = {}) {
  const test = state.testrun?.tests[0];
  const props: TestrunDetailPageProps = {
    id: 3n,
    state,
    now: Date.now(),
    selectedTest: test,
    onSelectTest: vi.fn(),
    log: { total: 2, getLine: (i) => `line ${i}`, ensureRange: vi.fn(), version: 0 },
    follow: true,
    onFollowChange: vi.fn(),
    search: { query: '', onQueryChange: vi.fn(), onFind: vi.fn() },
    logUrl: (name) => `/testruns/3/tests/${name}/log`,
    onCancel: vi.fn(async () => {}),
    onDelete: vi.fn(async () => {}),
    ...overrides,
  };
  render(
    <MemoryRouter>
      <TestrunDetailPage {...props} />
    </MemoryRouter>,
  );
  return props;
}

const running = aTestrun({
  id: 3n,
  status: Testrun_Status.RUNNING,
  tests: [aTest({ id: 1n, name: 'slow.sh', status: Test_Status.RUNNING, attempt: 2, runner: 'r1' })],
});

describe('TestrunDetailPage', () => {
  it('says it is reconnecting while the stream is down, and keeps showing what it had', () => {
    renderPage({ testrun: running, notFound: false, connection: 'reconnecting', error: 'The coordinator is unreachable.' });
    expect(screen.getByTestId('reconnecting').textContent).toMatch(/reconnecting/i);
    expect(screen.getByTestId('connection').getAttribute('data-connection')).toBe('reconnecting');
    expect(screen.getByText('slow.sh', { selector: 'td' })).toBeTruthy();
  });

  it('cancels only after the confirmation dialog', async () => {
    const props = renderPage({ testrun: running, notFound: false, connection: 'live' });
    fireEvent.click(screen.getByRole('button', { name: 'Cancel' }));
    const dialog = await screen.findByRole('dialog');
    expect(props.onCancel).not.toHaveBeenCalled();
    fireEvent.click(within(dialog).getByRole('button', { name: 'Cancel Testrun' }));
    await waitFor(() => expect(props.onCancel).toHaveBeenCalledTimes(1));
  });

  it('keeps the dialog open with the error when the action fails', async () => {
    const { ConnectError, Code } = await import('@connectrpc/connect');
    renderPage(
      { testrun: running, notFound: false, connection: 'live' },
      { onDelete: async () => Promise.reject(new ConnectError('no token', Code.Unauthenticated)) },
    );
    fireEvent.click(screen.getByRole('button', { name: 'Delete' }));
    const dialog = await screen.findByRole('dialog');
    fireEvent.click(within(dialog).getByRole('button', { name: 'Delete' }));
    expect(await within(dialog).findByText(/API token required/)).toBeTruthy();
  });

  it('offers no Cancel once the Testrun is final, and links the log download', () => {
    renderPage({
      testrun: aTestrun({ id: 3n, status: Testrun_Status.SUCCESS, tests: [aTest({ id: 1n, name: 'a b.sh', status: Test_Status.PASSED })] }),
      notFound: false,
      connection: 'ended',
    });
    expect(screen.queryByRole('button', { name: 'Cancel' })).toBeNull();
    expect(screen.getByTestId('download-log').getAttribute('href')).toBe('/testruns/3/tests/a b.sh/log');
  });

  it('shows not found for a missing Testrun', () => {
    renderPage({ notFound: true, connection: 'ended' });
    expect(screen.getByTestId('not-found').textContent).toContain('#3');
  });

  it('shows FLAKY tests and the flaky count in the header', () => {
    renderPage({
      testrun: aTestrun({
        id: 3n,
        status: Testrun_Status.SUCCESS,
        counts: { total: 2, passed: 2, flaky: 1 },
        tests: [
          aTest({ id: 1n, name: 'a.sh', status: Test_Status.PASSED }),
          aTest({ id: 2n, name: 'b.sh', status: Test_Status.FLAKY }),
        ],
      }),
      notFound: false,
      connection: 'ended',
    });
    const row = screen.getAllByTestId('test-row')[1]!;
    expect(row.getAttribute('data-status')).toBe('FLAKY');
    expect(within(row).getByText('FLAKY')).toBeTruthy();
    expect(screen.getByTestId('flaky-count').textContent).toBe('1 flaky');
    expect(screen.getByLabelText(/2 passed, 0 failed, 0 running, 0 queued, 1 flaky of 2/)).toBeTruthy();
  });

  it('offers Rerun failed only when some test did not pass, and reports a refused rerun', async () => {
    const { ConnectError, Code } = await import('@connectrpc/connect');
    const onRerun = vi.fn(async () => Promise.reject(new ConnectError('testrun 3 is still running', Code.FailedPrecondition)));
    renderPage(
      {
        testrun: aTestrun({
          id: 3n,
          status: Testrun_Status.FAILED,
          counts: { total: 2, passed: 1, failed: 1 },
          tests: [aTest({ id: 1n, status: Test_Status.FAILED }), aTest({ id: 2n, name: 'b.sh', status: Test_Status.PASSED })],
        }),
        notFound: false,
        connection: 'ended',
      },
      { onRerun },
    );
    const failedButton = screen.getByTestId('rerun-failed') as HTMLButtonElement;
    expect(failedButton.disabled).toBe(false);
    fireEvent.click(failedButton);
    await waitFor(() => expect(onRerun).toHaveBeenCalledWith(true));
    expect((await screen.findByTestId('rerun-error')).textContent).toContain('testrun 3 is still running');
    fireEvent.click(screen.getByTestId('rerun-all'));
    await waitFor(() => expect(onRerun).toHaveBeenCalledWith(false));
  });

  it('disables Rerun failed when everything passed', () => {
    renderPage(
      {
        testrun: aTestrun({ id: 3n, status: Testrun_Status.SUCCESS, counts: { total: 1, passed: 1 }, tests: [aTest({ status: Test_Status.PASSED })] }),
        notFound: false,
        connection: 'ended',
      },
      { onRerun: vi.fn(async () => {}) },
    );
    expect((screen.getByTestId('rerun-failed') as HTMLButtonElement).disabled).toBe(true);
    expect((screen.getByTestId('rerun-all') as HTMLButtonElement).disabled).toBe(false);
  });

  it('offers no rerun while the Testrun runs', () => {
    renderPage({ testrun: running, notFound: false, connection: 'live' }, { onRerun: vi.fn(async () => {}) });
    expect(screen.queryByTestId('rerun-failed')).toBeNull();
    expect(screen.queryByTestId('rerun-all')).toBeNull();
  });

  it('shows why tests wait, the suite, retries, selector, rerun origin and expected durations', () => {
    renderPage({
      testrun: aTestrun({
        id: 3n,
        status: Testrun_Status.CREATED,
        suite: 'my suite',
        retries: 2,
        selector: { gpu: 'a100', os: 'linux' },
        waiting: 'waiting for a runner with gpu=a100',
        rerunOf: 2n,
        tests: [aTest({ id: 1n, expectedDuration: { seconds: 4n, nanos: 200_000_000 } }), aTest({ id: 2n, name: 'new.sh' })],
      }),
      notFound: false,
      connection: 'live',
    });
    expect(screen.getByTestId('waiting').textContent).toContain('waiting for a runner with gpu=a100');
    expect(screen.getByTestId('suite-link').getAttribute('href')).toBe('/suites/my%20suite');
    expect(screen.getByTestId('retries').textContent).toBe('2');
    expect(within(screen.getByTestId('selector')).getByText('gpu=a100')).toBeTruthy();
    expect(within(screen.getByTestId('selector')).getByText('os=linux')).toBeTruthy();
    expect(screen.getByTestId('rerun-of').getAttribute('href')).toBe('/testruns/2');
    const expected = screen.getAllByTestId('expected');
    expect(expected[0]!.textContent).toBe('~4.2s');
    expect(expected[1]!.textContent).toBe('');
  });
});
