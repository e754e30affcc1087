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
});
