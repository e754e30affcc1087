// The console's one store: holds the client over the injected transport and
// the live subscriptions, and feeds the pages.
//
// Pages never call the API themselves: they read observable views from here
// (ListView, TestrunWatch) and call the actions below.

import { createClient, type Client, type Transport } from '@connectrpc/connect';
import { RunnerAdminService } from '../gen/testrunner/v1/admin_pb';
import { ContentService } from '../gen/testrunner/v1/content_pb';
import { TestrunService, type Testrun } from '../gen/testrunner/v1/testrun_pb';
import { DEFAULT_BACKOFF, type BackoffOptions } from '../lib/backoff';
import type { LogCacheOptions } from './LogCache';
import { ListView, type ListFilter } from './ListView';
import { TestrunWatch } from './TestrunWatch';
import { createWorkspaceTestrun, type NewWorkspaceTestrun, type WorkspaceProgress } from './workspaceUpload';

export type { ListFilter, ListState } from './ListView';
export type { TestrunWatchState } from './TestrunWatch';
export type { Connection } from './follow';
export type { NewWorkspaceTestrun, WorkspaceProgress } from './workspaceUpload';
export { ListView, TestrunWatch };

/** A Testrun to create, as the form collects it. */
export interface NewTestrun {
  username: string;
  files: Array<{ name: string; content: string }>;
  /** Empty or undefined: the runner picks an interpreter per file. */
  command?: string;
  /** Undefined: the coordinator's default. */
  timeoutSeconds?: number;
  /** Undefined: the username. */
  suite?: string;
  /** 0 to 5; undefined: 0. */
  retries?: number;
  /** Labels a runner must have. */
  selector?: Record<string, string>;
}

export interface StoreOptions {
  backoff?: BackoffOptions;
  log?: LogCacheOptions;
  /** Origin of the plain-text log endpoint; the page's own by default. */
  httpBase?: string;
}

/** A shared watch plus the number of pages using it. */
interface WatchRef {
  watch: TestrunWatch;
  users: number;
}

export class TestrunStore {
  readonly client: Client<typeof TestrunService>;
  /** Workspace uploads. */
  readonly content: Client<typeof ContentService>;
  /** The runner fleet: runners, draining, runner tokens. */
  readonly admin: Client<typeof RunnerAdminService>;
  private readonly backoff: BackoffOptions;
  private readonly watches = new Map<bigint, WatchRef>();

  constructor(
    transport: Transport,
    private readonly options: StoreOptions = {},
  ) {
    this.client = createClient(TestrunService, transport);
    this.content = createClient(ContentService, transport);
    this.admin = createClient(RunnerAdminService, transport);
    this.backoff = options.backoff ?? DEFAULT_BACKOFF;
  }

  /** A live page of the Testrun list; the caller closes it. */
  openList(filter: ListFilter, pageSize = 50): ListView {
    const view = new ListView(this.client, filter, pageSize, this.backoff);
    view.start();
    return view;
  }

  /**
   * The live view of one Testrun, shared by everyone who asks for the same
   * id; call `release` when done (the stream closes with its last user).
   */
  acquireTestrun(id: bigint): { watch: TestrunWatch; release: () => void } {
    let ref = this.watches.get(id);
    if (ref === undefined) {
      ref = { watch: new TestrunWatch(id, this.client, this.backoff, this.options.log), users: 0 };
      this.watches.set(id, ref);
      ref.watch.start();
    }
    ref.users++;
    const held = ref;
    let released = false;
    return {
      watch: held.watch,
      release: () => {
        if (released) return;
        released = true;
        if (--held.users === 0) {
          held.watch.close();
          if (this.watches.get(id) === held) this.watches.delete(id);
        }
      },
    };
  }

  /** Number of Testruns watched right now (for tests). */
  watchedCount(): number {
    return this.watches.size;
  }

  async createTestrun(input: NewTestrun): Promise<Testrun> {
    const command = input.command?.trim();
    return this.client.createTestrun({
      username: input.username,
      tests: input.files.map((f) => ({ name: f.name, content: f.content })),
      ...(command !== undefined && command !== '' && { command }),
      ...(input.timeoutSeconds !== undefined && { timeoutSeconds: input.timeoutSeconds }),
      ...(input.suite !== undefined && input.suite !== '' && { suite: input.suite }),
      retries: input.retries ?? 0,
      selector: input.selector ?? {},
    });
  }

  /** Hashes and uploads the folder (only what is missing), then creates the Testrun. */
  async createWorkspaceTestrun(
    input: NewWorkspaceTestrun,
    onProgress?: (p: WorkspaceProgress) => void,
    signal?: AbortSignal,
  ): Promise<Testrun> {
    return createWorkspaceTestrun({ testruns: this.client, content: this.content }, input, onProgress, signal);
  }

  /** A new Testrun from a finished one: every test, or only those that did not pass. */
  async rerunTestrun(id: bigint, onlyFailed: boolean): Promise<Testrun> {
    return this.client.rerunTestrun({ id, onlyFailed });
  }

  async cancelTestrun(id: bigint): Promise<Testrun> {
    return this.client.cancelTestrun({ id });
  }

  async deleteTestrun(id: bigint): Promise<void> {
    await this.client.deleteTestrun({ id });
  }

  /** The plain-text download of one test's whole log. */
  logUrl(testrunId: bigint, testName: string): string {
    const path = `/testruns/${testrunId}/tests/${encodeURIComponent(testName)}/log`;
    return this.options.httpBase === undefined ? path : new URL(path, this.options.httpBase).toString();
  }
}
