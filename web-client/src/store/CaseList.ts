// A test's (or a Testrun's) JUnit cases for the console: every page of one
// ListTestCases query, loaded in the background, newest state observable.
//
// The coordinator orders cases failed and errored first, then by name, so
// the first page already holds what a user looks for; the rest (up to
// 100,000 cases of one test) streams in behind it while the view, which is
// virtualised, shows what has arrived.

import type { Client } from '@connectrpc/connect';
import type { TestCase, TestCase_Status, TestrunService } from '../gen/testrunner/v1/testrun_pb';
import { describeError } from '../lib/errors';
import { Observable } from './observable';

/** Cases per ListTestCases page (the coordinator's largest). */
export const CASE_PAGE = 1000;

export interface CaseQuery {
  testrunId: bigint;
  testId?: bigint | undefined;
  status?: TestCase_Status | undefined;
  nameContains?: string | undefined;
}

export interface CaseListState {
  cases: readonly TestCase[];
  /** More pages are on their way. */
  loading: boolean;
  error?: string | undefined;
}

/** Loads every page of one query; `dispose` stops it. */
export class CaseList extends Observable<CaseListState> {
  private readonly abort = new AbortController();

  constructor(
    private readonly client: Client<typeof TestrunService>,
    readonly query: CaseQuery,
    private readonly pageSize = CASE_PAGE,
  ) {
    super({ cases: [], loading: true });
    void this.load();
  }

  private async load(): Promise<void> {
    let token = '';
    let cases: TestCase[] = [];
    try {
      for (;;) {
        const page = await this.client.listTestCases(
          {
            testrunId: this.query.testrunId,
            testId: this.query.testId,
            status: this.query.status,
            nameContains: this.query.nameContains === '' ? undefined : this.query.nameContains,
            pageSize: this.pageSize,
            pageToken: token,
          },
          { signal: this.abort.signal },
        );
        if (this.abort.signal.aborted) return;
        cases = cases.concat(page.cases);
        token = page.nextPageToken;
        this.setState({ cases, loading: token !== '' });
        if (token === '') return;
      }
    } catch (err) {
      if (!this.abort.signal.aborted) this.setState({ loading: false, error: describeError(err) });
    }
  }

  dispose(): void {
    this.abort.abort();
  }
}
