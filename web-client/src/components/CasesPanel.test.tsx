import { create } from '@bufbuild/protobuf';
import { createRouterTransport, createClient } from '@connectrpc/connect';
import { fireEvent, render, screen, within } from '@testing-library/react';
import { MemoryRouter } from 'react-router';
import { describe, expect, it, vi } from 'vitest';
import {
  TestCaseSchema,
  TestCase_Status,
  TestrunService,
  Test_Status,
  Testrun_Status,
  type TestCase,
} from '../gen/testrunner/v1/testrun_pb';
import { TestrunDetailPage, type TestrunDetailPageProps } from '../pages/TestrunDetailPage';
import { CaseList } from '../store/CaseList';
import { aTest, aTestrun, until } from '../test/fixtures';
import { CASE_DETAIL, CASE_ROW, CasesPanel, rowAt, rowOffsets } from './CasesPanel';

function cases(n: number, failed = 2): TestCase[] {
  return Array.from({ length: n }, (_, i) =>
    create(TestCaseSchema, {
      index: i,
      name: `case_${String(i).padStart(5, '0')}`,
      classname: 'suite.Class',
      status: i < failed ? TestCase_Status.FAILED : TestCase_Status.PASSED,
      message: i < failed ? '\u001b[31mAssertionError\u001b[0m: boom' : '',
      details: i < failed ? 'trace line 1\ntrace line 2' : '',
    }),
  );
}

function panel(list: TestCase[], overrides: Partial<Parameters<typeof CasesPanel>[0]> = {}) {
  const props = {
    cases: list,
    total: list.length,
    loading: false,
    note: '',
    status: undefined,
    onStatusChange: vi.fn(),
    name: '',
    onNameChange: vi.fn(),
    queryKey: 'q',
    ...overrides,
  };
  render(<CasesPanel {...props} />);
  return props;
}

describe('CasesPanel', () => {
  it('draws only the rows in view of 100,000 cases', () => {
    panel(cases(100_000));
    const rows = screen.getAllByTestId('case-row');
    expect(rows.length).toBeLessThan(40);
    expect(rows[0]!.getAttribute('data-status')).toBe('FAILED');
    expect(screen.getByTestId('cases-count').textContent).toBe('100,000 shown of 100,000');
  });

  it('opens a case to its message and details with ANSI colours rendered', () => {
    panel(cases(3));
    const first = screen.getAllByTestId('case-row')[0]!;
    expect(within(first).queryByTestId('case-detail')).toBeNull();
    fireEvent.click(within(first).getByRole('button'));
    const detail = within(screen.getAllByTestId('case-row')[0]!).getByTestId('case-detail');
    expect(detail.textContent).toContain('AssertionError: boom');
    expect(detail.textContent).toContain('trace line 2');
    expect(detail.textContent).not.toContain('\u001b');
    const red = within(detail).getByText('AssertionError');
    expect(red.style.color).not.toBe('');
    // Passed cases without text do not open.
    expect(within(screen.getAllByTestId('case-row')[2]!).queryByRole('button')).toBeNull();
  });

  it('passes filter changes up and shows the note', () => {
    const props = panel(cases(3), { note: 'JUnit report unreadable: line 3, column 7: bad' });
    fireEvent.change(screen.getByTestId('case-name'), { target: { value: 'case_0' } });
    expect(props.onNameChange).toHaveBeenCalledWith('case_0');
    expect(screen.getByTestId('case-note').textContent).toContain('line 3, column 7');
  });

  it('places rows by their heights, opened ones taller', () => {
    const tops = rowOffsets(5, new Set([1]));
    expect(Array.from(tops)).toEqual([0, 36, 72 + CASE_DETAIL, 108 + CASE_DETAIL, 144 + CASE_DETAIL, 180 + CASE_DETAIL]);
    expect(rowAt(tops, 0)).toBe(0);
    expect(rowAt(tops, CASE_ROW + 10)).toBe(1);
    expect(rowAt(tops, CASE_ROW * 2 + CASE_DETAIL + 1)).toBe(2);
  });
});

describe('CaseList', () => {
  it('loads every page of a query, failed first as the coordinator sends them', async () => {
    const all = cases(2500, 10);
    const seen: { testId?: bigint | undefined; status?: TestCase_Status | undefined; token: string }[] = [];
    const transport = createRouterTransport(({ service }) =>
      service(TestrunService, {
        listTestCases(req) {
          seen.push({ testId: req.testId, status: req.status, token: req.pageToken });
          const from = req.pageToken === '' ? 0 : Number(req.pageToken);
          const page = all.slice(from, from + req.pageSize);
          const next = from + req.pageSize < all.length ? String(from + req.pageSize) : '';
          return { cases: page, nextPageToken: next };
        },
      }),
    );
    const list = new CaseList(createClient(TestrunService, transport), { testrunId: 1n, testId: 7n }, 1000);
    await until(() => !list.getState().loading);
    expect(list.getState().cases.length).toBe(2500);
    expect(list.getState().cases[0]!.status).toBe(TestCase_Status.FAILED);
    expect(seen.map((s) => s.token)).toEqual(['', '1000', '2000']);
    expect(seen[0]!.testId).toBe(7n);
    list.dispose();
  });
});

describe('TestrunDetailPage with cases', () => {
  function renderPage(overrides: Partial<TestrunDetailPageProps>) {
    const test = aTest({
      id: 1n,
      name: 'test_x.py',
      status: Test_Status.RUNNING,
      logLines: 5n,
      cases: { total: 4, passed: 2, failed: 1, errored: 1 },
      note: 'exit 0, but the report lists 2 failed cases',
    });
    const run = aTestrun({ id: 3n, status: Testrun_Status.RUNNING, tests: [test] });
    const props: TestrunDetailPageProps = {
      id: 3n,
      state: { testrun: run, notFound: false, connection: 'live' },
      now: Date.now(),
      selectedTest: test,
      onSelectTest: vi.fn(),
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
  }

  it('shows case counts in the tests table and the live line count, not the stale one', () => {
    renderPage({ liveLines: () => 21 });
    const row = screen.getByTestId('test-row');
    const counts = within(row).getByTestId('case-counts');
    expect(counts.getAttribute('data-failed')).toBe('2');
    expect(counts.getAttribute('data-total')).toBe('4');
    expect(within(row).getByText('21')).toBeTruthy();
    expect(within(row).getByTestId('note-mark')).toBeTruthy();
  });
});
