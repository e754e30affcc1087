import { create } from '@bufbuild/protobuf';
import { fireEvent, render, screen, within } from '@testing-library/react';
import { MemoryRouter } from 'react-router';
import { describe, expect, it, vi } from 'vitest';
import { SetupSchema, Setup_Status, Testrun_Status } from '../gen/testrunner/v1/testrun_pb';
import { aTest, aTestrun } from '../test/fixtures';
import { TestrunDetailPage } from './TestrunDetailPage';

const HASH = 'ab'.repeat(32);

function renderRun(run: ReturnType<typeof aTestrun>) {
  render(
    <MemoryRouter>
      <TestrunDetailPage
        id={run.id}
        state={{ testrun: run, notFound: false, connection: 'live' }}
        now={Date.now()}
        onSelectTest={vi.fn()}
        follow
        onFollowChange={vi.fn()}
        search={{ query: '', onQueryChange: vi.fn(), onFind: vi.fn() }}
        logUrl={() => ''}
        onCancel={vi.fn(async () => {})}
        onDelete={vi.fn(async () => {})}
      />
    </MemoryRouter>,
  );
}

// MUI forms render slowly in jsdom on a loaded 2-core machine (over the 5 s default).
describe('TestrunDetailPage with a workspace', { timeout: 20_000 }, () => {
  const run = aTestrun({
    id: 4n,
    status: Testrun_Status.RUNNING,
    tests: [aTest({ name: 'tests/test_a.py' })],
    workspace: { digest: { hash: HASH, sizeBytes: 210n }, files: 12n, bytes: 5120n },
    setup: 'pip install -e .',
    setupTimeoutSeconds: 300,
    env: { PYTHONPATH: 'src', CI: 'true' },
    setups: [
      create(SetupSchema, {
        runner: 'r1',
        status: Setup_Status.FAILED,
        exitCode: 1,
        error: 'set-up exited with 1',
        output: 'Collecting x\n\u001b[31mERROR: no such package\u001b[0m\n',
        duration: { seconds: 3n },
      }),
      create(SetupSchema, { runner: 'r2', status: Setup_Status.PASSED, exitCode: 0, reused: true, output: 'ok\n' }),
    ],
  });

  it('shows the workspace: files, size, digest, set-up command and env', () => {
    renderRun(run);
    expect(screen.getByTestId('workspace-size').textContent).toBe('12 files, 5.0 KiB');
    expect(screen.getByTestId('workspace-digest').getAttribute('data-digest')).toBe(`${HASH}/210`);
    expect(screen.getByTestId('workspace-setup').textContent).toBe('pip install -e . (timeout 5m 00s)');
    expect(screen.getByTestId('workspace-env').textContent).toBe('CI=truePYTHONPATH=src');
  });

  it('lists each runner set-up; a failed one is open with its coloured output, a passed one opens on click', () => {
    renderRun(run);
    const rows = screen.getAllByTestId('setup-row');
    expect(rows.map((r) => [r.getAttribute('data-runner'), r.getAttribute('data-status')])).toEqual([
      ['r1', 'FAILED'],
      ['r2', 'PASSED'],
    ]);
    expect(within(rows[0]!).getByText('set-up exited with 1')).toBeTruthy();
    expect(within(rows[1]!).getByText('reused')).toBeTruthy();
    const log = screen.getByTestId('setup-log');
    expect(log.getAttribute('data-runner')).toBe('r1');
    const red = within(log).getByText('ERROR: no such package');
    expect(red.getAttribute('style')).toMatch(/color/);
    expect(log.textContent).not.toContain('\u001b');
    fireEvent.click(rows[1]!);
    expect(screen.getAllByTestId('setup-log').map((l) => l.getAttribute('data-runner'))).toEqual(['r1', 'r2']);
  });

  it('shows no workspace part for a Testrun without one', () => {
    renderRun(aTestrun({ id: 5n, tests: [aTest()] }));
    expect(screen.queryByTestId('workspace')).toBeNull();
    expect(screen.queryByTestId('setups')).toBeNull();
  });
});
