// One page of the Testrun list, kept current through WatchTestruns.

import type { Client } from '@connectrpc/connect';
import {
  Testrun_Status,
  type Testrun,
  type TestrunService,
  type TestrunsEvent,
} from '../gen/testrunner/v1/testrun_pb';
import type { BackoffOptions } from '../lib/backoff';
import { describeError } from '../lib/errors';
import { follow, type Connection } from './follow';
import { Observable } from './observable';

/** Which Testruns to list; both filters are exact matches. */
export interface ListFilter {
  status?: Testrun_Status;
  username?: string;
}

/** What the list page shows. */
export interface ListState {
  filter: ListFilter;
  /** 0-based page number. */
  page: number;
  pageSize: number;
  /** This page, newest first, without tests. */
  testruns: Testrun[];
  /** Testruns matching the filter, across all pages. */
  totalSize: number;
  hasNext: boolean;
  /** A page is being loaded (first load or page change). */
  loading: boolean;
  error?: string;
  connection: Connection;
}

/** Wait before re-reading a page after changes that alter which Testruns it holds. */
const REFRESH_DELAY_MS = 300;

/**
 * A paged, filtered view of ListTestruns plus the WatchTestruns stream with
 * the same filter. Status and count changes are applied in place; a new
 * Testrun is prepended on the first page; a deletion or a Testrun entering
 * or leaving the status filter re-reads the page (debounced). After the
 * stream reconnects, the page is read again, as events may have been missed.
 */
export class ListView extends Observable<ListState> {
  // tokens[n] is the page_token of page n; the first page has none.
  private tokens: string[] = [''];
  private loadSeq = 0;
  private refreshTimer: ReturnType<typeof setTimeout> | undefined;
  private readonly abort = new AbortController();

  constructor(
    private readonly client: Client<typeof TestrunService>,
    filter: ListFilter,
    pageSize: number,
    private readonly backoff: BackoffOptions,
  ) {
    super({
      filter,
      page: 0,
      pageSize,
      testruns: [],
      totalSize: 0,
      hasNext: false,
      loading: true,
      connection: 'connecting',
    });
  }

  /** Loads the first page and opens the watch. */
  start(): void {
    void this.load(0, true);
    const { status, username } = this.state.filter;
    void follow<TestrunsEvent>({
      signal: this.abort.signal,
      backoff: this.backoff,
      open: (signal, onOpen) =>
        this.client.watchTestruns(
          { ...(status !== undefined && { status }), ...(username !== undefined && { username }) },
          { signal, onHeader: onOpen },
        ),
      onEvent: (ev) => this.apply(ev),
      onConnection: (connection) => this.setState({ connection }),
      // Events may have been missed while disconnected: read the page again.
      onEstablished: (reconnect) => {
        if (reconnect) void this.load(this.state.page, false);
      },
      // The list stream never ends by itself: an end is a dropped stream.
      reconnectAfterEnd: () => true,
      isFinal: () => false,
      onFinal: () => {},
    });
  }

  close(): void {
    this.abort.abort();
    if (this.refreshTimer !== undefined) clearTimeout(this.refreshTimer);
  }

  nextPage(): void {
    if (this.state.hasNext) void this.load(this.state.page + 1, true);
  }

  prevPage(): void {
    if (this.state.page > 0) void this.load(this.state.page - 1, true);
  }

  /** Reads the current page again. */
  reload(): void {
    void this.load(this.state.page, false);
  }

  /** Applies one list event; exposed for tests. */
  apply(ev: TestrunsEvent): void {
    const e = ev.event;
    switch (e.case) {
      case 'created': {
        if (!this.matches(e.value)) return;
        this.setState({ totalSize: this.state.totalSize + 1 });
        if (this.state.page !== 0) return;
        const rest = this.state.testruns.filter((t) => t.id !== e.value.id);
        const list = [...rest, e.value].sort((a, b) => (a.id < b.id ? 1 : a.id > b.id ? -1 : 0));
        const overflow = list.length > this.state.pageSize;
        this.setState({
          testruns: overflow ? list.slice(0, this.state.pageSize) : list,
          hasNext: this.state.hasNext || overflow,
        });
        return;
      }
      case 'changed': {
        const i = this.state.testruns.findIndex((t) => t.id === e.value.id);
        const member = this.matches(e.value);
        if (i >= 0 && member) {
          const testruns = [...this.state.testruns];
          testruns[i] = e.value;
          this.setState({ testruns });
        } else if (i >= 0 || (member && this.state.filter.status !== undefined)) {
          // It left (or entered) the filtered set: which page holds what changed.
          this.scheduleRefresh();
        }
        return;
      }
      case 'deleted': {
        const id = e.value;
        if (this.state.testruns.some((t) => t.id === id)) {
          this.setState({
            testruns: this.state.testruns.filter((t) => t.id !== id),
            totalSize: Math.max(0, this.state.totalSize - 1),
          });
        }
        this.scheduleRefresh();
        return;
      }
      default:
        return;
    }
  }

  private matches(t: Testrun): boolean {
    const { status, username } = this.state.filter;
    return (status === undefined || t.status === status) && (username === undefined || t.username === username);
  }

  private scheduleRefresh(): void {
    if (this.refreshTimer !== undefined) return;
    this.refreshTimer = setTimeout(() => {
      this.refreshTimer = undefined;
      this.reload();
    }, REFRESH_DELAY_MS);
  }

  private async load(page: number, showLoading: boolean): Promise<void> {
    const seq = ++this.loadSeq;
    if (showLoading) this.setState({ loading: true });
    const { status, username } = this.state.filter;
    try {
      const res = await this.client.listTestruns(
        {
          pageSize: this.state.pageSize,
          pageToken: this.tokens[page] ?? '',
          ...(status !== undefined && { status }),
          ...(username !== undefined && { username }),
        },
        { signal: this.abort.signal },
      );
      if (seq !== this.loadSeq) return; // a newer load won
      this.tokens[page + 1] = res.nextPageToken;
      this.tokens.length = page + 2;
      this.setState({
        page,
        testruns: res.testruns,
        totalSize: Number(res.totalSize),
        hasNext: res.nextPageToken !== '',
        loading: false,
        error: undefined,
      });
    } catch (err) {
      if (seq !== this.loadSeq || this.abort.signal.aborted) return;
      this.setState({ loading: false, error: describeError(err) });
    }
  }
}
