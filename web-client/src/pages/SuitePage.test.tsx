import { create } from '@bufbuild/protobuf';
import { timestampFromMs } from '@bufbuild/protobuf/wkt';
import { fireEvent, render, screen, within } from '@testing-library/react';
import { MemoryRouter } from 'react-router';
import { describe, expect, it, vi } from 'vitest';
import { GetTestHistoryResponseSchema, SuiteSchema, Test_Status, Testrun_Status } from '../gen/testrunner/v1/testrun_pb';
import { T0, aTestrun } from '../test/fixtures';
import { SuitePage, type SuitePageProps } from './SuitePage';
import { SuitesPage } from './SuitesPage';

const suite = create(SuiteSchema, {
  summary: { name: 'web', tests: 2, testruns: 3, flakyTests: 1, lastRunAt: timestampFromMs(T0) },
  slowest: [
    {
      name: 'slow.sh',
      median: { seconds: 12n },
      samples: 3,
      last: [
        { testrunId: 9n, testId: 90n, status: Test_Status.PASSED, duration: { seconds: 12n } },
        { testrunId: 8n, testId: 80n, status: Test_Status.FAILED },
      ],
    },
  ],
  flakiest: [
    {
      name: 'flaky.sh',
      median: { nanos: 300_000_000 },
      samples: 3,
      flips: 2,
      flippedIn: [9n, 7n],
      last: [{ testrunId: 9n, testId: 91n, status: Test_Status.FLAKY, attempts: 2 }],
    },
  ],
  testruns: [aTestrun({ id: 9n, status: Testrun_Status.SUCCESS, counts: { total: 2, passed: 2, flaky: 1 } })],
});

function renderPage(overrides: Partial<SuitePageProps> = {}) {
  const props: SuitePageProps = { name: 'web', suite, notFound: false, onSelectTest: vi.fn(), ...overrides };
  render(
    <MemoryRouter>
      <SuitePage {...props} />
    </MemoryRouter>,
  );
  return props;
}

describe('SuitePage', () => {
  it('shows the slowest tests with medians and outcome dots linking to their Testruns', () => {
    renderPage();
    const row = screen.getByTestId('slow-test');
    expect(within(row).getByText('12s')).toBeTruthy();
    const dots = within(row).getAllByTestId('outcome-dot');
    expect(dots.map((d) => d.getAttribute('data-status'))).toEqual(['PASSED', 'FAILED']);
    expect(dots[0]!.getAttribute('href')).toBe('/testruns/9?test=slow.sh');
  });

  it('shows the flakiest tests with the Testruns where they flipped, and recent Testruns', () => {
    renderPage();
    const row = screen.getByTestId('flaky-test');
    expect(within(row).getByText('2×')).toBeTruthy();
    const links = within(within(row).getByTestId('flipped-in')).getAllByRole('link');
    expect(links.map((l) => l.getAttribute('href'))).toEqual(['/testruns/9?test=flaky.sh', '/testruns/7?test=flaky.sh']);
    const run = screen.getByTestId('suite-testrun');
    expect(within(run).getByRole('link', { name: '#9' }).getAttribute('href')).toBe('/testruns/9');
    expect(within(run).getByTestId('flaky-count').textContent).toBe('1 flaky');
  });

  it('asks for a test history on click and shows it', () => {
    const props = renderPage({
      selected: {
        name: 'flaky.sh',
        history: create(GetTestHistoryResponseSchema, {
          suite: 'web',
          name: 'flaky.sh',
          flaky: true,
          median: { seconds: 1n },
          samples: 2,
          flippedIn: [9n],
          outcomes: [
            { testrunId: 9n, testId: 91n, status: Test_Status.FLAKY, attempts: 2, runner: 'r1', duration: { seconds: 1n } },
            { testrunId: 7n, testId: 71n, status: Test_Status.PASSED, attempts: 1, runner: 'r2' },
          ],
        }),
      },
    });
    fireEvent.click(screen.getByTestId('slow-test'));
    expect(props.onSelectTest).toHaveBeenCalledWith('slow.sh');
    const panel = screen.getByTestId('test-history');
    expect(within(panel).getByTestId('history-flaky')).toBeTruthy();
    expect(within(panel).getByText('median 1.0s over 2 runs')).toBeTruthy();
    const rows = within(panel).getAllByTestId('history-row');
    expect(rows).toHaveLength(2);
    expect(within(rows[0]!).getByText('FLAKY')).toBeTruthy();
  });

  it('says so for a suite with no history', () => {
    renderPage({ suite: undefined, notFound: true, name: 'nope' });
    expect(screen.getByTestId('not-found').textContent).toContain('nope');
  });
});

describe('SuitesPage', () => {
  it('lists suites linking to their pages, and offers more when there are', () => {
    const onMore = vi.fn();
    render(
      <MemoryRouter>
        <SuitesPage
          suites={[{ $typeName: 'testrunner.v1.SuiteSummary', name: 'my suite', tests: 4, testruns: 2, flakyTests: 1 }]}
          loading={false}
          hasMore
          onMore={onMore}
        />
      </MemoryRouter>,
    );
    const row = screen.getByTestId('suite-row');
    expect(within(row).getByRole('link', { name: 'my suite' }).getAttribute('href')).toBe('/suites/my%20suite');
    fireEvent.click(screen.getByRole('button', { name: 'More suites' }));
    expect(onMore).toHaveBeenCalled();
  });
});
